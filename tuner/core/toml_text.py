"""Study files as TOML text: reading one (:func:`read_study_file`, ``tomllib`` with tuner's
errors) and writing one (:func:`dump_toml`: ``tomllib`` only reads).

Reading needs nothing but the standard library, so ``tuner run`` refuses a file that is not
TOML before it loads Optuna and torch (about 2 s).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner.core.errors import ConfigError


def read_study_file(path: str | Path) -> dict[str, Any]:
    """The tables of the study file at ``path``; :class:`ConfigError` when it is missing, a
    folder, not a regular file, unreadable or not TOML (the message names the file)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"study file {p} is a folder; give a .toml file (e.g. "
                          "studies/quickstart.toml)")
    if not p.exists():
        raise ConfigError(f"study file {p} does not exist")
    if not p.is_file():
        raise ConfigError(f"study file {p} is not a regular file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark is fine
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read study file: {e}") from None


def dump_toml(config: Mapping[str, Any]) -> str:
    """A study file's text for a TOML-shaped dict (tables of scalars, lists, inline tables).

    TOML has no null: ``None`` values are left out, and so are empty tables.
    """

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    return "\n".join(
        f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items() if v is not None)
        for name, table in config.items() if isinstance(table, Mapping) and table)
