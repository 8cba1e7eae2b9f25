"""A real headless Chromium for the browser tests (Debian's ``chromium``; .ci/run installs it).

``dump_dom`` returns the page's DOM after its scripts ran (a React app, plotly figures);
``screenshot`` saves a PNG under test-artifacts/ (gitignored) for a person to look at, and
``ink`` says how much of it is not background, so a blank page fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

TEST_ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars")


def _run(url: str, output: str, size: tuple[int, int], budget_ms: int) -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium "
                    "(.ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
             f"--virtual-time-budget={budget_ms}", output, url],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, f"chromium failed on {url}: {done.stderr[-2000:]}"
    return done.stdout


def dump_dom(url: str, budget_ms: int = 15_000, *,
             until: Callable[[str], bool] | None = None, tries: int = 4) -> str:
    """The DOM of ``url`` once its scripts (and the network requests they made) ran. With
    ``until``, it is read again, with twice the time budget each try, until ``until(dom)``
    holds (a busy machine: the app's requests to a server may not have come back in time);
    the last read is returned either way, for the caller's assertion to say what is missing."""
    dom = ""
    for attempt in range(tries if until is not None else 1):
        dom = _run(url, "--dump-dom", (1400, 1000), budget_ms * 2**attempt)
        if until is None or until(dom):
            break
    return dom


def screenshot(url: str, name: str, size: tuple[int, int] = (1400, 1000),
               budget_ms: int = 15_000, *, min_ink: float | None = None,
               tries: int = 4) -> Path:
    """Save a screenshot of ``url`` as test-artifacts/``name`` and return its path. With
    ``min_ink``, it is taken again (twice the budget each try) until :func:`ink` exceeds it."""
    TEST_ARTIFACTS.mkdir(exist_ok=True)
    path = TEST_ARTIFACTS / name
    for attempt in range(tries if min_ink is not None else 1):
        path.unlink(missing_ok=True)
        _run(url, f"--screenshot={path}", size, budget_ms * 2**attempt)
        assert path.is_file(), f"chromium wrote no screenshot of {url}"
        if min_ink is None or ink(path) > min_ink:
            break
    return path


def ink(png: Path) -> float:
    """The fraction of pixels that are not (near) white: ~0 for a blank page."""
    from PIL import Image

    gray = Image.open(png).convert("L")
    histogram = gray.histogram()
    return 1 - sum(histogram[245:]) / (gray.width * gray.height)
