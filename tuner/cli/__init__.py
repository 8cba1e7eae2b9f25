"""The ``tuner`` command line: a thin shell over the library.

``main`` turns every :class:`~tuner.core.errors.TunerError` and usage error into one
``error: …`` line with exit status 2; Ctrl-C exits 130 with one ``interrupted: …`` line saying
what was kept; anything else is a bug (exit 1, the traceback only with ``--debug``).
"""

from __future__ import annotations

import logging
import signal
import sys

import typer
from typer._click.exceptions import NoArgsIsHelpError
from typer.exceptions import TyperException

from tuner.cli import _app, compare, inspect, run, science, service, view, worker  # noqa: F401
from tuner.cli._app import Interrupted, app, reflow_help, say_interrupted
from tuner.core.errors import TunerError
from tuner.core.version import __version__

reflow_help()
say_interrupted()


def _print_version(value: bool) -> None:
    if value:
        print(f"tuner {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print the version and exit.",
    ),
) -> None:
    """Options that apply to every command (``--version`` runs before any command is needed)."""


HELP_ONLY = {"--help", "-h", "--version"}  # answered without Optuna (0.25 s of imports)
# Commands that read (or delete from) a plain SQLite file without Optuna (store.sqlite_reader,
# store.sqlite_delete); where they fall back to Optuna, they quiet it first (_app.quiet_optuna).
READERS = {"list", "show", "export", "delete"}
# Commands that read their study file first, so that a file that is not TOML is refused at
# once, not after 2 s of Optuna and torch; they quiet Optuna themselves, right after.
FILE_FIRST = {"run", "compare"}


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _needs_optuna(argv: list[str]) -> bool:
    command = _command(argv)
    return (command is not None and command not in READERS | FILE_FIRST
            and not HELP_ONLY & set(argv))


def _setup_logging(debug: bool = False, optuna_too: bool = True) -> None:
    if optuna_too:
        _app.quiet_optuna()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log = logging.getLogger("tuner")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)  # DEBUG: failed trials' tracebacks
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.INFO, "info")


def _check_environment() -> None:
    """Bad ``$TUNER_*`` settings fail before any work, not inside every trial."""
    import os

    if os.environ.get("TUNER_CPU_THREADS"):
        from tuner.nn.training import cpu_threads_setting

        cpu_threads_setting()


def _sigterm(signum: int, frame: object) -> None:
    # SIGTERM (docker stop, kill) ends a run like Ctrl-C: the running trial is marked failed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tuner`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    _app.main_entry = main
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        _setup_logging(debug, optuna_too=_needs_optuna(argv))
        _check_environment()
        rv = app(args=argv, prog_name="tuner", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except NoArgsIsHelpError as e:
        print(e.format_message())
        return 0
    except TyperException as e:  # usage errors: bad option, missing argument, bad value
        print(f"error: {e.format_message()}", file=sys.stderr)
        return 2
    except TunerError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # a command's own line: what it kept
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before any command started (options, logging, Optuna's import)
        command = _command(argv)
        what = f"tuner {command}" if command else "tuner"
        print(f"interrupted: {what} before it started; nothing was done", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        from tuner.store.credentials import mask_url

        print(f"error: unexpected failure: {type(e).__name__}: {mask_url(str(e))} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
