"""``tuner run`` and ``tuner resume``."""

from __future__ import annotations

from pathlib import Path

import typer

from tuner.cli import _app
from tuner.cli._app import app, err, out, storage_option
from tuner.cli._render import render_trial_params

PACK_HELP = ("Train this many trials at once as one vectorised population (those sharing "
             "architecture and batch size); overrides [study] pack.")
DEVICE_HELP = "auto, cpu, cuda or cuda:N (overrides [objective] device)."


@app.command()
def run(
    study_file: Path = typer.Argument(..., help="Study file (TOML), e.g. studies/quickstart.toml."),
    storage: str | None = storage_option(),
    n_trials: int | None = typer.Option(
        None, "--n-trials", min=1, help="Budget of finished trials (overrides the study file)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.001,
        help="Stop starting trials after this many seconds (this run only; [study] timeout in "
        "the file is the study's own, counted from its first trial).",
    ),
    sampler: str | None = typer.Option(
        None, "--sampler", help="random, tpe, gp, grid, qmc or cmaes (overrides the study file)."
    ),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Study seed (sampler and data)."),
    name: str | None = typer.Option(None, "--name", help="Study name (default: from the file)."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", min=1, show_default=False,
        help="Run the trials in N local worker processes (each a `tuner worker`; the CPU cores "
        "are split among them). Default: in this process.",
    ),
    pack: int | None = typer.Option(None, "--pack", min=1, help=PACK_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    warm_start: str | None = typer.Option(
        None, "--warm-start", metavar="NAME",
        help="Start from another study's complete trials: those that fit this space are prior "
        "observations the sampler learns from, not counted in the budget ([study] warm_start).",
    ),
    warm_start_storage: str | None = typer.Option(
        None, "--warm-start-storage", metavar="URL",
        help="Where the --warm-start study is stored (default: this study's storage).",
    ),
    warm_start_top: int | None = typer.Option(
        None, "--warm-start-top", min=0, metavar="K",
        help="Also run the warm-start study's best K trials again first, as this study's own.",
    ),
    create_only: bool = typer.Option(
        False, "--create-only",
        help="Create (or update) the stored study and run no trial: for `tuner worker`s, "
        "containers and schedulers that run the trials.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Run a study from a study file until it has its budget of finished trials.

    Running a stored study again continues it; a stored study of the same name with a
    different objective, space or direction is refused.
    """
    from tuner.core.toml_text import read_study_file

    read_study_file(study_file)  # not TOML: refused before 2 s of Optuna and torch imports
    _app.quiet_optuna()
    from tuner.cli._progress import TrialProgress
    from tuner.nn.device import check_device
    from tuner.run.config import load_config
    from tuner.run.study import run as run_study
    from tuner.store.credentials import mask_url
    from tuner.store.storage import resolve_url
    from tuner.store.studies import n_finished

    if jobs is not None:
        from tuner.run.workers import single_threaded_parent

        single_threaded_parent()  # before any torch work: the workers can then be forked
    config = load_config(study_file, name=name, sampler=sampler, seed=seed, n_trials=n_trials,
                         pack=pack, warm_start=warm_start, warm_start_top=warm_start_top)
    if device is not None:
        check_device(device, "--device")
    url = resolve_url(storage)
    header = _header(config, url)
    if create_only:
        result = run_study(config, url, create_only=True, warm_start_storage=warm_start_storage)
        done = n_finished(result.study)
        out.print(f"study {config.name!r} is stored in {mask_url(url)}: {done} of "
                  f"{config.n_trials} finished trials; run its trials with: "
                  f"tuner worker {config.name}")
        return
    if jobs is not None:
        from tuner.run.workers import run_jobs

        progress = TrialProgress(config.metric, quiet, f"{header} · {jobs} workers")
        result = run_jobs(config, url, jobs=jobs, progress=progress, device=device,
                          timeout=timeout, fork_entry=_app.main_entry,
                          warm_start_storage=warm_start_storage)
    else:
        result = run_study(config, url, progress=TrialProgress(config.metric, quiet, header),
                           device=device, timeout=timeout, warm_start_storage=warm_start_storage)
    _report(result, config.metric, url)


def _report_pareto(study) -> None:
    """The Pareto set of a study with several metrics, one line per trial."""
    from tuner.store.studies import pareto_set
    from tuner.views.real_params import real_params

    front = pareto_set(study)
    if not front:
        out.print("no trial has completed yet")
        return
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    out.print(f"Pareto set: {len(front)} trial(s) that no other beats in every metric")
    for t in front:
        values = ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, t.values, strict=True))
        params = ", ".join(f"{k}={v}" for k, v in real_params(t).items())
        out.print(f"  #{t.number}: {values}  ({params})", markup=False)


def _header(config, url: str) -> str:
    """The run's first line: the study, its task and metric (with the direction), the sampler
    and the storage. Reading a file's target for the task is an error here, before anything
    is stored."""
    from tuner.store.credentials import mask_url

    task = config.task()
    what = f"{task} · " if task else ""
    goal = (" and ".join(f"{d} {m}" for d, m in zip(config.directions, config.metrics,
                                                      strict=True))
            if config.multi else f"{config.direction} {config.metric}")
    if config.constraints:
        goal += " · subject to " + ", ".join(f"{m} {op} {b:g}" for m, op, b in config.constraints)
    return (f"study {config.name!r} · {what}{goal} · "
            f"{config.sampler} sampler · storage {mask_url(url)}")


@app.command()
def resume(
    name: str = typer.Argument(..., help="Name of a stored study."),
    storage: str | None = storage_option(),
    n_trials: int | None = typer.Option(
        None, "--n-trials", min=1,
        help="Run until the study has this many more finished trials (the stored budget grows "
        "to match). Default: until the stored budget is reached.",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.001,
        help="Stop starting trials after this many seconds (this run only).",
    ),
    config_file: Path | None = typer.Option(
        None, "--config", help="Study file for a study created outside tuner (plain Optuna)."
    ),
    pack: int | None = typer.Option(None, "--pack", min=1, help=PACK_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Continue a stored study with its stored sampler, pruner, objective and space.

    A study file's [study] timeout counts from the study's first trial; --n-trials or
    --timeout run past it.
    """
    from tuner.cli._progress import TrialProgress
    from tuner.nn.device import check_device
    from tuner.run.config import load_config

    if device is not None:
        check_device(device, "--device")
    from tuner.run.study import resume as resume_study
    from tuner.store.credentials import mask_url
    from tuner.store.storage import resolve_url
    from tuner.store.studies import study_metric

    config = load_config(config_file) if config_file else None
    url = resolve_url(storage)
    if n_trials is not None and config is None:
        from tuner.cli.service import is_submitted, queue_more

        if is_submitted(name, storage):  # a study of the queue: its pool runs the trials
            row = queue_more(name, n_trials, storage)
            out.print(f"study {name!r} is queued with {n_trials} more trial(s): "
                      f"{row['finished']} of {row['budget']} finished; pool workers run them "
                      f"(to run them here instead: tuner worker {name})", markup=False)
            return
    header = f"resuming study {name!r} · storage {mask_url(url)}"
    result = resume_study(name, url, n_trials=n_trials, timeout=timeout,
                          progress=TrialProgress(quiet=quiet, header=header), config=config,
                          pack=pack, device=device)
    _report(result, study_metric(result.study), url)


def _report(result, metric: str, url: str) -> None:
    from tuner.core.keys import FAIL_REASON
    from tuner.store.studies import count_states
    from tuner.views.summaries import nothing_learned, trial_record

    study = result.study
    numbers = set(result.trial_numbers)
    mine = [t for t in study.get_trials(deepcopy=False) if t.number in numbers]
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(count_states(mine).items()))
    name = study.study_name
    if result.stopped_by == "deadline":
        d = result.deadline
        out.print(f"study {name!r}: its timeout of {d.seconds:g}s ([study] timeout, counted from "
                  f"its first trial at {d.since:%Y-%m-%d %H:%M:%S}) has passed; run more with: "
                  f"tuner resume {name} --n-trials 10 (or --timeout SECONDS)", markup=False)
    elif result.stopped_by == "grid":
        out.print(f"study {name!r}: every point of its grid has run")
    elif result.stopped_by == "timeout":
        out.print(f"study {name!r}: this run's --timeout has passed; continue with: "
                  f"tuner resume {name}")
    if not mine:
        if result.stopped_by == "budget":
            out.print(f"study {name!r} already has its budget of finished trials; "
                      f"add more with: tuner resume {name} --n-trials 10")
    else:
        trials = "1 trial" if len(mine) == 1 else f"{len(mine)} trials"
        out.print(f"study {study.study_name!r}: {trials} this run ({counts}) "
                  f"in {result.elapsed_s:.1f}s")
    best = result.best_trial
    if len(study.directions) > 1:
        _report_pareto(study)
    elif best is None:
        out.print("no trial has completed yet")
    else:
        out.print(f"best trial #{best.number}: {metric} = {best.value:.4g}")
        render_trial_params(trial_record(best))
    if not result.interrupted and (warning := nothing_learned(study, mine)):
        err.print(f"warning: {warning}", markup=False)
    if result.interrupted:
        stopped = sum(t.state.name == "FAIL" and t.user_attrs.get(FAIL_REASON) == "interrupted"
                      for t in mine)
        what = {0: "no trial was running", 1: "the running trial was marked failed"}.get(
            stopped, f"{stopped} running trials were marked failed")
        err.print(f"interrupted: {what}; continue with tuner resume {study.study_name}")
        raise typer.Exit(130)
