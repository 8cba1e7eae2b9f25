"""``tuner serve``: the API and the dashboard (:mod:`tuner.service.app`) on uvicorn, and with
``--workers N`` a local pool (:mod:`tuner.service.pool`) as child processes."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path

from tuner.core.errors import ConfigError
from tuner.service.app import create_app
from tuner.service.pool import slot_commands, start_slots, stop_children
from tuner.service.token import read_token
from tuner.store import artifacts
from tuner.store.credentials import mask_url
from tuner.store.storage import open_storage, resolve_url
from tuner.views.dashboard import LOCAL_HOSTS, bind_error, wsgi_app

log = logging.getLogger("tuner")

def serve(storage: str | None = None, *, host: str = "127.0.0.1", port: int = 8080,
          workers: int = 0, devices: list[str] | None = None, token_file: Path | None = None,
          allow_objectives: list[str] | None = None, data_root: Path | None = None,
          artifact_dir: str | None = None, say: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C or SIGTERM (which stop the local pool's workers too)."""
    import uvicorn

    url = resolve_url(storage)
    if data_root is not None and not data_root.is_dir():
        raise ConfigError(f"--data-root {data_root} is not a folder")
    opened = open_storage(url)  # the server may be the first: a new SQLite file is fine
    token, where = read_token(token_file, url)
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as e:
        raise ConfigError(bind_error(host, port, e)) from None
    directory = artifacts.artifact_dir(url, artifact_dir)
    app = create_app(opened, token=token, storage_url=url,
                     allow_objectives=allow_objectives or [], data_root=data_root,
                     dashboard=wsgi_app(opened, directory))
    bound = sock.getsockname()[1]
    base = f"http://{host}:{bound}"
    say(f"serving the queue of {mask_url(url)} on {base}: API {base}/api/v1 (docs {base}/docs), "
        f"dashboard {base}/dashboard/")
    say(f"API token: in {where} (send it as Authorization: Bearer TOKEN; the dashboard asks "
        "for it once)")
    if host not in LOCAL_HOSTS:
        log.warning("serving on %s: anyone who can reach it and has the token can submit studies"
                    ", which run code of the allowed objectives", host)
    children = []
    if workers:
        children = start_slots(slot_commands(workers, devices, None, []), url)
        say(f"with {workers} pool worker(s) on this machine")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        stop_children(children)
