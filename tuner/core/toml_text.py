"""Writing a study file: the TOML text of a TOML-shaped dict (``tomllib`` only reads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
