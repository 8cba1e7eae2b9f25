"""``tuner compare``: the same study under several samplers, several seeds each."""

from __future__ import annotations

from pathlib import Path

import typer

from tuner.cli._app import app, err, out, quiet_optuna


@app.command()
def compare(
    study_file: Path = typer.Argument(..., help="Study file (TOML), e.g. studies/quickstart.toml."),
    samplers: str = typer.Option(
        "random,tpe,gp", "--samplers", help="Comma-separated sampler names to compare."
    ),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Seeds per sampler."),
    n_trials: int | None = typer.Option(
        None, "--n-trials", min=1, help="Trials per run (default: the study file's n_trials)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for best.png, table.md, "
                                "results.json."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", min=1, help="Worker processes (default: one per CPU core)."
    ),
    target: float | None = typer.Option(
        None, "--target", help="Metric value to reach, with several metrics a hypervolume "
        "(default: the median final best of all runs, see --target-share)."
    ),
    target_share: float = typer.Option(
        0.5, "--target-share", min=0.01, max=1.0,
        help="Default target: the final best value this share of all runs reach.",
    ),
    seed: int | None = typer.Option(None, "--seed", min=0, help="First seed (default: the "
                                    "study file's; repeat r uses seed + r)."),
) -> None:
    """Run one study under each sampler with several seeds, in parallel, in memory; write a
    best-so-far plot, a table of trials-to-target and final best, and the raw results. A study
    with several metrics is compared by hypervolume."""
    from tuner.core.toml_text import read_study_file

    read_study_file(study_file)  # not TOML: refused before 2 s of Optuna and torch imports
    quiet_optuna()
    from tuner.run.compare import check_output, check_samplers, random_start_notes
    from tuner.run.compare import compare as run_compare
    from tuner.run.config import load_config

    names = [s.strip() for s in samplers.split(",") if s.strip()]
    check_samplers(names)
    check_output(output)
    config = load_config(study_file, seed=seed)
    check_samplers(names, config)  # e.g. grid over a continuous range: before the first line
    by = f" by hypervolume of {' and '.join(config.metrics)}" if config.multi else ""
    err.print(f"comparing {', '.join(names)} on study {config.name!r}{by}: {repeats} seeds × "
              f"{n_trials or config.n_trials} trials each, in memory", markup=False)
    for note in random_start_notes(config, names, n_trials or config.n_trials):
        err.print(f"warning: {note}", markup=False)

    finished = []

    def done(run) -> None:
        finished.append(run)
        failed = run.states.count("FAIL")
        line = f"  {run.sampler} seed {run.seed}: {run.outcome()} in {run.elapsed_s:.1f}s" + (
            f", {failed} of {len(run.states)} trials failed" if failed else "") + (
            f"; stopped: {run.stopped}" if run.stopped else "")
        err.print(line, markup=False)  # a failure's reason is text, not rich markup

    try:
        result = run_compare(config, names, repeats=repeats, n_trials=n_trials, jobs=jobs,
                             target=target, target_share=target_share, on_run=done,
                             out_dir=output)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runs are in memory, nothing to resume
        err.print(f"interrupted: {len(finished)} of {len(names) * repeats} runs done; "
                  f"nothing written to {output}", markup=False)
        raise typer.Exit(130) from None
    paths = result.files
    out.print(paths["table"].read_text(encoding="utf-8"), end="", markup=False)  # as written
    out.print(f"wrote {paths['plot']}, {paths['table']}, {paths['results']}")
