"""The package's own metadata: what `pip install` reads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def test_license_uses_the_current_fields():
    # A TOML table made setuptools print its project.license deprecation warning at every install.
    assert PYPROJECT["project"]["license"] == "MIT"
    requires = " ".join(PYPROJECT["build-system"]["requires"])
    assert int(re.search(r"setuptools>=(\d+)", requires).group(1)) >= 77, \
        "SPDX license strings need setuptools 77"
