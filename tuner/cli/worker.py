"""``tuner worker``: one more process on a stored study, from any machine."""

from __future__ import annotations

import logging

import typer

from tuner.cli._app import app, storage_option
from tuner.cli.run import DEVICE_HELP, PACK_HELP


@app.command()
def worker(
    name: str = typer.Argument(..., help="Name of a stored study (created by tuner run)."),
    storage: str | None = storage_option(),
    n_trials: int | None = typer.Option(
        None, "--n-trials", min=1,
        help="Run at most this many trials in this worker (the study's budget still stops it).",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.001, help="Stop starting trials after this many seconds."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="Torch threads for this worker's training (default: $TUNER_CPU_THREADS, else 1); "
        "at most cores/N when N workers share a machine.",
    ),
    wait: float = typer.Option(
        0.0, "--wait", min=0.0,
        help="Wait up to this many seconds for the study (and its SQLite/journal file) to be "
        "created (workers started together with the `tuner run` that creates it).",
    ),
    salt: int | None = typer.Option(None, "--salt", min=0, hidden=True),
    announce_trials: bool = typer.Option(False, "--announce-trials", hidden=True),
    pack: int | None = typer.Option(None, "--pack", min=1, help=PACK_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Join a stored study and run trials until the study as a whole has its budget.

    Sampler, pruner, objective and search space come from the study stored with it; the
    budget counts finished trials of all workers together. Start as many workers as you like,
    on as many machines as can reach the storage (PostgreSQL for several machines).
    """
    from tuner.cli._progress import TrialProgress
    from tuner.cli.run import _report
    from tuner.run.workers import announce_trial, work
    from tuner.store.credentials import mask_url
    from tuner.store.storage import resolve_url
    from tuner.store.studies import study_metric

    if quiet:
        logging.getLogger("tuner").setLevel(logging.WARNING)
    url = resolve_url(storage)
    header = f"worker on study {name!r} · storage {mask_url(url)}"
    if device is not None:
        from tuner.nn.device import check_device

        check_device(device, "--device")
    result = work(name, url, n_trials=n_trials, timeout=timeout, threads=threads, wait_s=wait,
                  seed_salt=salt, progress=TrialProgress(quiet=quiet, header=header),
                  pack=pack, device=device, announce=announce_trial if announce_trials else None)
    metric = study_metric(result.study)
    if not quiet or result.interrupted:
        _report(result, metric, url)
