"""The Typer application and what every command shares (options, consoles)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperOption

app = typer.Typer(
    name="tuner",
    help="Tune learning rate, batch size and weight initialisation of small neural networks.\n\n"
    "Start with:  tuner run studies/quickstart.toml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks only with --debug, never with locals
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The running command line's entry, set by tuner.cli.main: `run --jobs` forks workers that run
# it (tuner.run.workers._fork), and a command cannot import the module that registers it.
main_entry: Callable[[list[str]], int] | None = None

def quiet_optuna() -> None:
    """tuner prints its own progress; Optuna's per-trial INFO/WARNING lines would repeat it.
    Imports Optuna (0.1-0.25 s): called by every command that uses it, before it does."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.logging.disable_propagation()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STORAGE_HELP = (
    "Storage URL: sqlite:///FILE, postgresql://USER@HOST/DB, any SQLAlchemy URL, or "
    "journal:FILE. Default: $TUNER_STORAGE, else sqlite:///tuner.db. Keep passwords out of "
    "it: $TUNER_STORAGE_PASSWORD or $TUNER_STORAGE_PASSWORD_FILE supply one."
)


def storage_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--storage", envvar=None, help=STORAGE_HELP, show_default=False)


ARTIFACT_DIR_HELP = (
    "Folder of the trials' pictures. Default: $TUNER_ARTIFACT_DIR, else beside the storage "
    "file (tuner.db -> tuner-artifacts/), else ./tuner-artifacts."
)


def artifact_dir_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--artifact-dir", help=ARTIFACT_DIR_HELP, show_default=False)


# The commands in the order of work, under a heading each (``tuner --help``).
PANELS = {
    "Run studies": ["run", "resume", "worker"],
    "Share a service": ["serve", "submit", "queue", "pause", "unpause", "cancel"],
    "Look at stored studies": ["list", "show", "export", "delete"],
    "See them": ["dashboard", "report"],
    "Init science and samplers": ["diagnose", "pretrain", "compare"],
}
_ORDER = [name for names in PANELS.values() for name in names]
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}


def _command_name(info: typer.models.CommandInfo) -> str:
    assert info.callback is not None
    return info.name or info.callback.__name__.replace("_", "-")


def _flag_without_type(self: TyperOption, ctx: object) -> str | None:
    """A flag takes no value: Typer's help would still print ``<bool>`` beside it."""
    return None if self.is_bool_flag else _typer_display_type(self, ctx)


_typer_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign]


def reflow_help() -> None:
    """Make the help texts print as written. Each command's docstring paragraph becomes one
    line, so that Typer wraps it to the terminal instead of keeping the source's line breaks
    mid-sentence; and the texts are escaped for rich, which would take a TOML table name such
    as ``[objective]`` for markup and drop it. Called once every command is registered."""
    import inspect

    from rich.markup import escape

    app.registered_commands.sort(key=lambda info: _ORDER.index(_command_name(info)))
    escaped: set[int] = set()  # an option object shared by commands is escaped once
    for info in app.registered_commands:
        info.rich_help_panel = _PANEL_OF[_command_name(info)]
        if info.callback is None:
            continue
        doc = inspect.getdoc(info.callback)
        if info.help is None and doc:
            info.help = escape("\n\n".join(" ".join(p.split()) for p in doc.split("\n\n")))
        for param in inspect.signature(info.callback).parameters.values():
            default = param.default
            if isinstance(default, typer.models.ParameterInfo) and default.help \
                    and id(default) not in escaped:
                escaped.add(id(default))
                default.help = escape(default.help)


class Interrupted(Exception):
    """A Ctrl-C (or SIGTERM) that a command let through, as its one line for ``main`` to print
    (exit status 130). Typer itself turns a KeyboardInterrupt into a silent exit 130."""


# What a Ctrl-C leaves, for each command: "interrupted: tuner NAME …". run, resume and worker
# say it themselves during their trials, compare during its runs; these lines are for the
# moments they do not (loading, between trials, waiting for a study) and for every other
# command.
_NO_TRIAL_RUNNING = "while no trial was running; every trial that finished is stored"
INTERRUPTED = {
    "run": _NO_TRIAL_RUNNING,
    "resume": _NO_TRIAL_RUNNING,
    "worker": _NO_TRIAL_RUNNING,
    "list": "(it only reads: nothing changed)",
    "show": "(it only reads: nothing changed)",
    "export": "wrote nothing",
    "delete": "(a study is deleted in one transaction: it is stored whole or gone; tuner list "
              "says which)",
    "dashboard": "before it served; nothing was written",
    "report": "wrote nothing",
    "diagnose": "(it runs in memory); nothing is kept",
    "pretrain": "wrote no checkpoint",
    "compare": "before its first run; nothing was written",
    "serve": "stopped serving; the queue and every study are stored (its local pool workers "
             "marked their running trials failed, to be retried)",
    "submit": "before the study was queued (a study it stored is not in the queue: submit "
              "it again)",
    "queue": "(it only reads: nothing changed)",
    "pause": "(the change is one write: tuner queue says whether it happened)",
    "unpause": "(the change is one write: tuner queue says whether it happened)",
    "cancel": "(tuner queue says whether the study was cancelled; run the command again to "
              "finish it)",
}


def say_interrupted() -> None:
    """Wrap every registered command so that a KeyboardInterrupt it lets through becomes
    :class:`Interrupted`, with its line from :data:`INTERRUPTED`. Called once every command
    is registered."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = _interruptible(info.callback, _command_name(info))


def _interruptible(callback: Callable[..., Any], name: str) -> Callable[..., Any]:
    line = f"interrupted: tuner {name} {INTERRUPTED.get(name, '(it stopped where it was)')}"

    @functools.wraps(callback)  # Typer reads the parameters through __wrapped__
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted(line) from None

    return command
