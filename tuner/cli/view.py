"""``tuner dashboard`` and ``tuner report``: looking at studies in a browser."""

from __future__ import annotations

from pathlib import Path

import typer

from tuner.cli._app import app, artifact_dir_option, err, out, storage_option


@app.command()
def dashboard(
    storage: str | None = storage_option(),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: every "
                             "interface; the dashboard has no login)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0: any free one)."),
    artifact_dir: Path | None = artifact_dir_option(),
) -> None:
    """Serve optuna-dashboard over the storage, with each trial's pictures; Ctrl-C stops it."""
    from tuner.views.dashboard import start

    board = start(storage, host=host, port=port, artifact_dir=artifact_dir)
    try:  # from the moment the URL is out, Ctrl-C is the normal way to stop: exit 0
        where = f" · artifacts {board.artifact_dir}" if board.artifact_dir else ""
        err.print(f"storage {board.storage}{where}")
        out.print(f"dashboard on {board.url}  (Ctrl-C to stop)")
        out.file.flush()
        board.run()
    except KeyboardInterrupt:
        board.close()
    err.print("dashboard stopped")


@app.command()
def report(
    name: str = typer.Argument(..., help="Name of a stored study."),
    storage: str | None = storage_option(),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write."),
    artifact_dir: Path | None = artifact_dir_option(),
) -> None:
    """Write one self-contained HTML report of a study (opens offline, no server needed)."""
    from tuner.store.storage import check_not_storage
    from tuner.store.studies import open_study
    from tuner.views.report import write_report

    check_not_storage(output, storage)
    path = write_report(open_study(name, storage), output, artifact_dir=artifact_dir)
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")
