"""``tuner list``, ``show``, ``export`` and ``delete``: reading (and removing) stored studies."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tuner.cli._app import app, artifact_dir_option, err, out, quiet_optuna, storage_option
from tuner.core.errors import ConfigError

if TYPE_CHECKING:
    from tuner.store.snapshot import StudySnapshot


def _stored(storage: str | None, name: str | None = None, *,
            details: bool = True) -> list[StudySnapshot]:
    """The stored studies (only ``name``, when given), read without Optuna where the storage is
    a plain SQLite file at the installed Optuna's schema, else through Optuna."""
    from tuner.store.sqlite_reader import read_sqlite
    from tuner.store.urls import resolve_url

    url = resolve_url(storage)
    found = read_sqlite(url, name, details=details)
    if found is not None:
        return found
    from tuner.store.storage import open_storage
    from tuner.store.studies import snapshots

    quiet_optuna()
    return snapshots(open_storage(url, must_exist=True), name)


@app.command("list")
def list_(
    storage: str | None = storage_option(),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the studies in a storage with their trial counts and best values."""
    from tuner.cli._render import render_list
    from tuner.store.credentials import mask_url
    from tuner.store.urls import resolve_url
    from tuner.views.summaries import list_studies

    rows = list_studies(_stored(storage, details=False))
    if as_json:
        out.print_json(json.dumps(rows))
    else:
        render_list(rows, mask_url(resolve_url(storage)))


@app.command()
def show(
    name: str = typer.Argument(..., help="Name of a stored study."),
    storage: str | None = storage_option(),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    top: int = typer.Option(5, "--top", min=1, help="How many best trials to list."),
) -> None:
    """Show a study: settings, counts per state, the best trial and the top trials."""
    from tuner.cli._render import render_show
    from tuner.views.summaries import study_summary

    summary = study_summary(_stored(storage, name)[0], top=top)
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        render_show(summary)


class Format(StrEnum):
    csv = "csv"
    json = "json"


@app.command()
def export(
    name: str = typer.Argument(..., help="Name of a stored study."),
    storage: str | None = storage_option(),
    fmt: Format = typer.Option(
        Format.csv, "--format",
        help="csv (one row per trial; the value's column is named after the study's metric, "
        "e.g. val_mse) or json (the study's metric and direction, and each trial's record with "
        "its value).",
    ),
    output: Path | None = typer.Option(None, "-o", "--output",
                                       help="File; '-' or none: standard output."),
) -> None:
    """Export every trial of a study (params with real batch sizes, values, states, times, the
    last step reached)."""
    from tuner.core.paths import write_replacing
    from tuner.store.urls import check_not_storage
    from tuner.views.summaries import export_trials

    if output is not None and str(output) == "-":  # the shell convention for stdout
        output = None
    if output is not None:
        check_not_storage(output, storage)
    text = export_trials(_stored(storage, name)[0], fmt.value)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        write_replacing(output, text)  # a Ctrl-C leaves the file as it was, or the new one
    except OSError as e:
        raise ConfigError(f"cannot write {output}: {e.strerror}") from None
    err.print(f"wrote {output}")


@app.command()
def delete(
    name: str = typer.Argument(..., help="Name of a stored study."),
    storage: str | None = storage_option(),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    artifact_dir: Path | None = artifact_dir_option(),
) -> None:
    """Delete a study, all its trials, and its trials' pictures."""
    from tuner.store import sqlite_delete
    from tuner.store.artifact_files import artifact_dir as pictures_dir
    from tuner.store.artifact_files import remove_artifacts
    from tuner.store.urls import resolve_url

    url = resolve_url(storage)
    n = sqlite_delete.count_trials(url, name)  # a plain SQLite file: no Optuna needed
    if n is None:
        return _delete_through_optuna(name, url, yes, artifact_dir)
    _confirm(name, n, yes)
    pictures = sqlite_delete.delete_study(url, name)
    if pictures is None:  # the file changed under us (its schema): Optuna decides
        return _delete_through_optuna(name, url, True, artifact_dir)
    folder = pictures_dir(url, artifact_dir)
    removed = remove_artifacts(folder, pictures) if folder is not None else 0
    _deleted(name, n, removed, folder)


def _confirm(name: str, n: int, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"refusing to delete study {name!r} ({n} trials) without "
                          "confirmation; pass --yes")
    if not typer.confirm(f"delete study {name!r} and its {n} trials?"):
        err.print("not deleted")
        raise typer.Exit(1)  # a "no", not an interrupt (130)


def _deleted(name: str, n: int, removed: int, folder: Path | None) -> None:
    also = f" and {removed} trial pictures from {folder}" if removed else ""
    out.print(f"deleted study {name!r} ({n} trials){also}")


def _delete_through_optuna(name: str, url: str, yes: bool, artifact_dir: Path | None) -> None:
    import optuna

    from tuner.store import artifacts
    from tuner.store.storage import open_storage
    from tuner.store.studies import load_existing

    quiet_optuna()
    store = open_storage(url, must_exist=True)
    study = load_existing(name, store, any_objectives=True)
    n = len(study.get_trials(deepcopy=False))
    _confirm(name, n, yes)
    pictures = artifacts.study_artifact_ids(study)
    optuna.delete_study(study_name=name, storage=store)
    folder = artifacts.artifact_dir(artifacts.storage_url(store), artifact_dir)
    removed = artifacts.remove_artifacts(folder, pictures) if folder is not None else 0
    _deleted(name, n, removed, folder)
