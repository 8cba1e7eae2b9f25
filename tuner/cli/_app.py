"""The Typer application and what every command shares (options, consoles)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="tuner",
    help="Tune learning rate, batch size and weight initialisation of small neural networks.\n\n"
    "Start with:  tuner run studies/quickstart.toml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks only with --debug, never with locals
    context_settings={"help_option_names": ["-h", "--help"]},
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STORAGE_HELP = (
    "Storage URL: sqlite:///FILE, postgresql://USER@HOST/DB, any SQLAlchemy URL, or "
    "journal:FILE. Default: $TUNER_STORAGE, else sqlite:///tuner.db. Keep passwords out of "
    "it: $TUNER_STORAGE_PASSWORD or $TUNER_STORAGE_PASSWORD_FILE supply one."
)


def storage_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--storage", envvar=None, help=STORAGE_HELP, show_default=False)


def reflow_help() -> None:
    """Give every command its docstring with each paragraph on one line, so that Typer's help
    wraps paragraphs to the terminal instead of keeping the source's line breaks mid-sentence.
    Called once every command is registered."""
    import inspect

    for info in app.registered_commands:
        doc = inspect.getdoc(info.callback) if info.callback is not None else None
        if info.help is None and doc:
            info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
