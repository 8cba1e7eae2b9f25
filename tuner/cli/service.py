"""The service's commands: ``tuner submit``, ``queue``, ``pause``, ``unpause``, ``cancel`` and
``serve``. Each acts on a storage directly (``--storage``) or through a running server's API
(``--server URL``, with its token)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from tuner.cli._app import app, err, out, quiet_optuna, storage_option
from tuner.core.errors import ConfigError

SERVER_HELP = ("A running `tuner serve` to act through (http://HOST:PORT), with its token "
               "from $TUNER_API_TOKEN or --token-file. Default: act on --storage directly.")
TOKEN_FILE_HELP = "File holding the server's API token (default: $TUNER_API_TOKEN)."


def server_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--server", metavar="URL", help=SERVER_HELP, show_default=False)


def token_file_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--token-file", help=TOKEN_FILE_HELP, show_default=False)


def _client(server: str, token_file: Path | None) -> Any:
    from tuner.service.client import Client

    return Client(server, token_file)


def _one_way(server: str | None, storage: str | None) -> None:
    if server is not None and storage is not None:
        raise ConfigError("give --server (through a running tuner serve) or --storage "
                          "(the storage itself), not both")


def _storage(storage: str | None) -> tuple[Any, str]:
    quiet_optuna()
    from tuner.store.storage import open_storage, resolve_url

    url = resolve_url(storage)
    return open_storage(url, must_exist=True), url


@app.command()
def submit(
    study_file: Path = typer.Argument(..., help="Study file (TOML) to queue."),
    priority: int = typer.Option(0, "--priority", help="Higher runs first (default 0)."),
    max_parallel: int | None = typer.Option(
        None, "--max-parallel", min=1, metavar="K",
        help="At most K of its trials run at once (default: as many as workers are free).",
    ),
    name: str | None = typer.Option(None, "--name", help="Study name (default: from the file)."),
    n_trials: int | None = typer.Option(
        None, "--n-trials", min=1, help="Budget of finished trials (overrides the study file)."
    ),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Study seed (sampler and data)."),
    storage: str | None = storage_option(),
    server: str | None = server_option(),
    token_file: Path | None = token_file_option(),
) -> None:
    """Check a study file, store the study and queue it for the pool's workers; returns at once.

    The study is checked as `tuner run` checks it (its data loaded, its objective imported):
    bad input is one error and nothing is queued. Submitting a stored study again updates its
    priority and limit. Pool workers (`tuner worker --pool`, `tuner serve --workers N`) run it.
    """
    from tuner.core.toml_text import read_study_file

    _one_way(server, storage)
    raw = read_study_file(study_file)
    overrides = {"name": name, "n_trials": n_trials, "seed": seed}
    if server is not None:
        text = study_file.read_text(encoding="utf-8-sig")
        row = _client(server, token_file).submit(text, priority=priority,
                                                 max_parallel=max_parallel, **overrides)
        where = server
    else:
        del raw
        quiet_optuna()
        from tuner.run.config import load_config
        from tuner.service.queue import as_row
        from tuner.service.submit import submit as submit_study
        from tuner.store.credentials import mask_url
        from tuner.store.storage import resolve_url

        url = resolve_url(storage)
        config = load_config(study_file, **overrides)
        row = as_row(submit_study(config, url, priority=priority, max_parallel=max_parallel))
        where = mask_url(url)
    limit = f", at most {row['max_parallel']} at once" if row["max_parallel"] else ""
    out.print(f"queued study {row['name']!r} in {where}: priority {row['priority']}{limit}, "
              f"{row['finished']} of {row['budget']} finished trials", markup=False)
    out.print(f"watch it with: tuner queue{_where_flag(server, storage)}; pool workers "
              f"(tuner worker --pool) run its trials", markup=False)


def _where_flag(server: str | None, storage: str | None) -> str:
    if server is not None:
        return f" --server {server}"
    return " --storage URL" if storage is not None else ""


@app.command()
def queue(
    storage: str | None = storage_option(),
    server: str | None = server_option(),
    token_file: Path | None = token_file_option(),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show every submitted study (queued, running, paused, finished, cancelled) and the pool.

    Each study: priority, finished/budget, running trials and on which workers, best so far,
    and a rough estimate of the time left (its mean trial time, over the trials it runs at
    once).
    """
    _one_way(server, storage)
    if server is not None:
        data = _client(server, token_file).queue()
    else:
        from tuner.service.queue import queue_view

        data = queue_view(_storage(storage)[0])
    if as_json:
        out.print_json(json.dumps(data))
        return
    from tuner.cli._render import render_queue

    render_queue(data)


def _act(action: str, name: str, storage: str | None, server: str | None,
         token_file: Path | None, **kwargs: Any) -> dict[str, Any]:
    _one_way(server, storage)
    if server is not None:
        return _client(server, token_file).act(action, name, **kwargs)
    from tuner.service.queue import act

    return act(_storage(storage)[0], action, name, **kwargs)


@app.command()
def pause(
    name: str = typer.Argument(..., help="Name of a submitted study."),
    storage: str | None = storage_option(),
    server: str | None = server_option(),
    token_file: Path | None = token_file_option(),
) -> None:
    """Start no more trials of a study; its running trials finish. Undo with `tuner unpause`."""
    row = _act("pause", name, storage, server, token_file)
    running = f"; its {row['running']} running trial(s) finish" if row["running"] else ""
    out.print(f"study {name!r} paused{running}; go on with: tuner unpause {name}", markup=False)


@app.command()
def unpause(
    name: str = typer.Argument(..., help="Name of a submitted study."),
    storage: str | None = storage_option(),
    server: str | None = server_option(),
    token_file: Path | None = token_file_option(),
) -> None:
    """Put a paused or cancelled study back in the queue."""
    row = _act("unpause", name, storage, server, token_file)
    out.print(f"study {name!r} is queued again: {row['finished']} of {row['budget']} "
              "finished trials", markup=False)


@app.command()
def cancel(
    name: str = typer.Argument(..., help="Name of a submitted study."),
    storage: str | None = storage_option(),
    server: str | None = server_option(),
    token_file: Path | None = token_file_option(),
) -> None:
    """Take a study out of the queue: its running trials end as failed, with the reason;
    its finished trials stay. `tuner unpause` or `tuner resume NAME --n-trials N` queue it
    again."""
    row = _act("cancel", name, storage, server, token_file)
    stopped = row.get("cancelled_trials", 0)
    what = (f"; {stopped} running trial(s) marked failed ('cancelled')" if stopped else "")
    out.print(f"study {name!r} cancelled{what}; its {row['finished']} finished trial(s) are "
              "kept", markup=False)


def queue_more(name: str, n_trials: int, storage: str | None, server: str | None = None,
               token_file: Path | None = None) -> dict[str, Any]:
    """``tuner resume NAME --n-trials N`` of a submitted study: more trials, queued."""
    return _act("resume", name, storage, server, token_file, n_trials=n_trials)


def is_submitted(name: str, storage: str | None) -> bool:
    """Whether study ``name`` was submitted to the queue (``resume`` then queues more)."""
    from tuner.core.keys import QUEUE_ATTR
    from tuner.store.studies import load_existing

    try:
        return QUEUE_ATTR in load_existing(name, _storage(storage)[0],
                                           any_objectives=True).user_attrs
    except Exception:  # resume itself says what is wrong with the name or the storage
        return False


@app.command()
def serve(
    storage: str | None = storage_option(),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0: any free one)."),
    workers: int = typer.Option(
        0, "--workers", min=0,
        help="Also run N pool workers on this machine (default 0: the pool runs elsewhere).",
    ),
    devices: str | None = typer.Option(
        None, "--devices", metavar="LIST",
        help="Devices dealt out to the --workers in turn, e.g. cuda:0,cuda:1.",
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file",
        help="File holding the API token (default: $TUNER_API_TOKEN, else a random token "
        "made at first start in a 0600 file beside the storage).",
    ),
    allow_objective: list[str] = typer.Option(
        [], "--allow-objective", metavar="NAME",
        help="An objective ('package.module:function') submitted studies may name, besides "
        "the built-ins and installed entry points (repeat for several).",
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root",
        help="The folder submitted studies' data files and checkpoints must lie under "
        "(default: none may name a file).",
    ),
    artifact_dir: str | None = typer.Option(
        None, "--artifact-dir", help="Folder of the trials' pictures (as tuner dashboard)."
    ),
) -> None:
    """Serve the queue over HTTP: the JSON API (/api/v1, OpenAPI at /docs), the dashboard
    (/dashboard/) and, with --workers N, a local pool.

    Every request needs the token (Authorization: Bearer, or the dashboard's login page).
    A submitted study may name only allowed objectives and files under --data-root.
    """
    quiet_optuna()
    from tuner.service.serve import serve as run_server

    run_server(storage, host=host, port=port, workers=workers,
               devices=devices.split(",") if devices else None, token_file=token_file,
               allow_objectives=allow_objective, data_root=data_root,
               artifact_dir=artifact_dir, say=lambda line: err.print(line, markup=False))
