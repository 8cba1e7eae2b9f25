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


def signed_in_screenshot(base: str, token: str, page: str, name: str,
                         until: Callable[[str], bool], size: tuple[int, int] = (1400, 1000),
                         timeout_s: float = 120) -> tuple[Path, str]:
    """Open ``base + page`` in Chromium as a person would: sent to the login page, type the
    token into its form, submit, and once ``until(the page's text)`` holds, save a screenshot
    as test-artifacts/``name``. Driven over the DevTools protocol. Returns the PNG's path and
    the page's text."""
    import base64
    import json
    import re
    import time
    import urllib.request

    from websockets.sync.client import connect

    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    TEST_ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}",
                                 f"--window-size={size[0]},{size[1]}",
                                 "--remote-debugging-port=0", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            deadline = time.monotonic() + 60
            port = None
            while port is None and time.monotonic() < deadline:
                m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/",
                              proc.stderr.readline())
                port = m and m.group(1)
            assert port, "chromium did not open its DevTools port"
            targets = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{port}/json/list", timeout=30).read())
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            with connect(ws_url, max_size=None, open_timeout=30) as ws:
                ids = iter(range(1, 10**6))

                def call(method: str, **params: object) -> dict:
                    n = next(ids)
                    ws.send(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        reply = json.loads(ws.recv(timeout=60))
                        if reply.get("id") == n:
                            return reply.get("result", {})

                def evaluate(expression: str) -> object:
                    got = call("Runtime.evaluate", expression=expression, returnByValue=True)
                    return got.get("result", {}).get("value")

                def wait(condition: str, what: str) -> None:
                    end = time.monotonic() + timeout_s
                    while not evaluate(condition):
                        assert time.monotonic() < end, f"timed out waiting for {what}"
                        time.sleep(0.2)

                call("Page.navigate", url=base + page)
                wait("!!document.querySelector('input[name=token]')", "the login form")
                evaluate(f"document.querySelector('input[name=token]').value = "
                         f"{json.dumps(token)}; document.querySelector('form').submit(); 1")
                end = time.monotonic() + timeout_s
                text = ""
                while True:
                    text = str(evaluate("document.body ? document.body.innerText : ''") or "")
                    if until(text):
                        break
                    assert time.monotonic() < end, f"page never showed what was asked: {text}"
                    time.sleep(0.3)
                time.sleep(1.0)  # let the plots finish drawing
                shot = call("Page.captureScreenshot", format="png")
                path = TEST_ARTIFACTS / name
                path.write_bytes(base64.b64decode(shot["data"]))
                return path, text
        finally:
            proc.kill()
            proc.wait()
