"""What a study submitted to the server may name: the server's rules, checked on the study
file's text before anything is imported, read or stored.

* ``[objective] name``: a built-in, an installed entry point (``tuner.objectives``), or one the
  server was started with (``--allow-objective``). A ``package.module:function`` taken from a
  request is never imported unless it is on that list.
* ``[objective] path`` and ``checkpoint``: files under the server's ``--data-root`` (resolved,
  symlinks followed, so neither ``..`` nor a link leads out of it); none without a data root.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tuner.core.errors import TunerError
from tuner.objectives import BUILTIN, ENTRY_POINT_GROUP

FILE_KEYS = ("path", "checkpoint")  # the [objective] settings that name a file


class NotAllowed(TunerError):
    """A submitted study names an objective or a file the server does not allow (HTTP 403)."""


def allowed_objectives(extra: Iterable[str] = ()) -> list[str]:
    """Every objective name a submitted study may use."""
    installed = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return sorted({*BUILTIN, *installed, *extra})


def check_submitted(raw: Mapping[str, Any], allow: Iterable[str],
                    data_root: Path | None) -> None:
    """Raise :class:`NotAllowed` unless the study file ``raw`` names only what the server
    allows (see the module doc). Malformed tables are left to the study file's own checks."""
    objective = raw.get("objective")
    if not isinstance(objective, Mapping):
        return
    name = objective.get("name")
    allowed = allowed_objectives(allow)
    if isinstance(name, str) and name not in allowed:
        raise NotAllowed(f"[objective] name {name!r} is not allowed on this server; allowed: "
                         f"{', '.join(allowed)} (the server's --allow-objective adds more)")
    for key in FILE_KEYS:
        value = objective.get(key)
        if value is None:
            continue
        if data_root is None:
            raise NotAllowed(f"[objective] {key}: this server takes no files from a submitted "
                             "study (start it with --data-root DIR to allow files under DIR)")
        if not isinstance(value, str):
            continue  # the study file's own check says what it must be
        root = data_root.resolve()
        target = (root / Path(value).expanduser()).resolve()
        if not target.is_relative_to(root):
            raise NotAllowed(f"[objective] {key} {value!r} is outside the server's data root; "
                             "name a file under it (relative to it)")
