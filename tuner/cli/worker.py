"""``tuner worker``: one more process on a stored study, from any machine."""

from __future__ import annotations

import logging

import typer

from tuner.cli._app import app, storage_option
from tuner.cli.run import DEVICE_HELP, PACK_HELP
from tuner.core.errors import ConfigError


@app.command()
def worker(
    name: str | None = typer.Argument(
        None, help="Name of a stored study (created by tuner run); leave out with --pool.",
        show_default=False),
    storage: str | None = storage_option(),
    pool: bool = typer.Option(
        False, "--pool",
        help="Serve the queue (tuner submit) instead of one study: each trial from the queued "
        "study that should run next, until stopped.",
    ),
    slots: int = typer.Option(
        1, "--slots", min=1, help="With --pool: run N pool workers on this machine (processes "
        "sharing its cores and --devices).",
    ),
    devices: str | None = typer.Option(
        None, "--devices", metavar="LIST",
        help="With --pool: devices dealt out to the --slots in turn, e.g. cuda:0,cuda:1.",
    ),
    ray: str | None = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="With --pool: run the pool workers as actors on the Ray cluster at ADDRESS "
        "(host:port, or 'auto'), --slots of them.",
    ),
    until_empty: bool = typer.Option(
        False, "--until-empty", help="With --pool: stop once no queued study has a trial left "
        "to start.",
    ),
    slot: int | None = typer.Option(None, "--slot", hidden=True),
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
    """Join a stored study and run trials until the study as a whole has its budget; or, with
    --pool, serve the queue of submitted studies.

    Sampler, pruner, objective and search space come from the study stored with it; the
    budget counts finished trials of all workers together. Start as many workers as you like,
    on as many machines as can reach the storage (PostgreSQL for several machines). A pool
    worker takes each trial from the queued study that should run next (priority, then the
    one furthest below its fair share) and keeps each study's objective and data loaded.
    """
    if pool or ray is not None:
        if name is not None:
            raise ConfigError(f"give a study NAME or --pool, not both (tuner worker {name} "
                              "works on that study; tuner worker --pool serves the queue)")
        _pool(storage, slots=slots, devices=devices, ray=ray, threads=threads,
              n_trials=n_trials, timeout=timeout, until_empty=until_empty, slot=slot,
              device=device, quiet=quiet)
        return
    if name is None:
        raise ConfigError("give the NAME of a stored study, or --pool to serve the queue")
    for flag, given in (("--slots", slots != 1), ("--devices", devices), ("--until-empty",
                                                                          until_empty)):
        if given:
            raise ConfigError(f"{flag} is for a pool worker: add --pool (and leave out NAME)")
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


def _pool(storage: str | None, *, slots: int, devices: str | None, ray: str | None,
          threads: int | None, n_trials: int | None, timeout: float | None, until_empty: bool,
          slot: int | None, device: str | None, quiet: bool) -> None:
    """``tuner worker --pool``: one pool worker here, ``--slots`` of them as child processes,
    or Ray actors."""
    from tuner.cli._app import err, quiet_optuna
    from tuner.store.credentials import mask_url
    from tuner.store.storage import resolve_url

    if device is not None and devices is not None:
        raise ConfigError("give --device (this worker's) or --devices (dealt out to --slots), "
                          "not both")
    deal = devices.split(",") if devices else None
    if deal:
        from tuner.nn.device import check_device

        for d in deal:
            check_device(d, "--devices")
    elif device is not None:
        from tuner.nn.device import check_device

        check_device(device, "--device")
    url = resolve_url(storage)
    quiet_optuna()
    if quiet:
        logging.getLogger("tuner").setLevel(logging.WARNING)
    extra = [*(["--n-trials", str(n_trials)] if n_trials else []),
             *(["--timeout", str(timeout)] if timeout else []),
             *(["--until-empty"] if until_empty else []), *(["--quiet"] if quiet else [])]
    if ray is not None:
        from tuner.service.ray_pool import run_on_ray

        err.print(f"pool of {slots} Ray actor(s) at {ray} · storage {mask_url(url)}",
                  markup=False)
        total = run_on_ray(ray, url, slots, devices=deal, n_trials=n_trials, timeout=timeout,
                           until_empty=until_empty)
        err.print(f"pool on Ray: {total} trial(s) run", markup=False)
        return
    if slots > 1:
        from tuner.service.pool import run_slots, slot_commands

        err.print(f"pool of {slots} workers · storage {mask_url(url)}", markup=False)
        code = run_slots(slot_commands(slots, deal, threads, extra), url)
        if code:
            raise typer.Exit(code)
        return
    from tuner.service.pool import serve_queue, worker_id

    me = worker_id(slot)
    if slot is None:
        err.print(f"pool worker {me} · storage {mask_url(url)} · serving the queue until "
                  "stopped (Ctrl-C)" if not (n_trials or timeout or until_empty) else
                  f"pool worker {me} · storage {mask_url(url)}", markup=False)
    result = serve_queue(url, device=device or (deal[0] if deal else None), threads=threads,
                         name=me, n_trials=n_trials, timeout=timeout, until_empty=until_empty,
                         say=None if not quiet else (lambda line: None))
    served = ", ".join(f"{n} of {s!r}" for s, n in sorted(result.trials.items())) or "none"
    if not quiet or result.interrupted:
        err.print(f"pool worker {me}: {result.total} trial(s) ({served}); stopped: "
                  f"{result.stopped_by}", markup=False)
    if result.interrupted:
        raise typer.Exit(130)
