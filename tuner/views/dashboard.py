"""``tuner dashboard``: optuna-dashboard over a tuner storage, with the trials' pictures.

The server is optuna-dashboard's WSGI app (:func:`optuna_dashboard.wsgi`) with tuner's file
artifact store attached (:mod:`tuner.store.artifacts`) and the trials' real parameter values
(:mod:`tuner.views.real_params`), on the standard library's threaded WSGI
server. It binds to 127.0.0.1 unless told otherwise: the dashboard has no login, and anyone who
reaches it can rename or delete studies.
"""

from __future__ import annotations

import errno
import logging
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.storages import BaseStorage

from tuner.core.errors import ConfigError
from tuner.store import artifacts
from tuner.store.credentials import mask_url
from tuner.store.storage import open_storage, resolve_url
from tuner.views.real_storage import RealParamsStorage

LOCAL_HOSTS = ("127.0.0.1", "localhost")
log = logging.getLogger("tuner")
# What Optuna's PED-ANOVA warns while the dashboard computes a study's importances (each time
# a page asks): a conditional parameter (momentum, drawn only with sgd) that too few trials have,
# or too few trials for it at all. The page shows the importances anyway; the terminal is no
# place for them (the report names its own caveats on the figure).
IMPORTANCE_WARNINGS = (
    r"Some regimes for parameter .* have less than \d+ trials",
    r"Target and region quantiles select the same set of trials",
    r"The number of trials is too small to compute importances",
)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # Ctrl-C must not wait for a browser's open connections


class _QuietHandler(WSGIRequestHandler):
    """Logs server errors only, not every request the single-page app makes."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith("5"):
            super().log_request(code, size)


@dataclass
class Dashboard:
    """A bound, not yet serving dashboard. ``url`` is where a browser opens it."""

    server: WSGIServer
    url: str
    storage: str  # the storage URL, password masked
    artifact_dir: Path | None

    def run(self) -> None:
        """Serve until Ctrl-C (or SIGTERM, which the CLI turns into Ctrl-C), then close."""
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop listening (safe to call twice)."""
        self.server.server_close()


def start(
    storage: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifact_dir: str | Path | None = None,
) -> Dashboard:
    """Open the storage, attach the artifact store and bind ``host:port`` (0: any free port).

    Raises StorageError when the storage cannot be opened and ConfigError when the address
    cannot be bound (port busy, unknown host); nothing is served or written then. From then on
    this process ignores the warnings in :data:`IMPORTANCE_WARNINGS`.
    """
    url = resolve_url(storage)
    opened = open_storage(url, must_exist=True)
    directory = artifacts.artifact_dir(url, artifact_dir)
    try:
        server = make_server(host, port, None, server_class=_Server, handler_class=_QuietHandler)
    except OSError as e:
        raise ConfigError(bind_error(host, port, e)) from None
    try:  # made only now, so that a busy port leaves nothing behind
        server.set_app(wsgi_app(opened, directory))
    except Exception:
        server.server_close()
        raise
    bound_port = server.server_address[1]
    if host not in LOCAL_HOSTS:
        log.warning("serving on %s: the dashboard has no login; anyone who can reach this "
                    "address can read, rename and delete studies", host)
    return Dashboard(server, f"http://{host}:{bound_port}/dashboard/", mask_url(url), directory)


def wsgi_app(opened: BaseStorage, directory: Path | None) -> Callable[..., Any]:
    """optuna-dashboard's WSGI app over ``opened``, reading the trials' real parameter values
    (``batch_size`` 32, not ``batch_size_log2`` 5) and their pictures in ``directory``. From
    then on this process ignores the warnings in :data:`IMPORTANCE_WARNINGS`."""
    store = artifacts.open_store(directory) if directory is not None else None
    import optuna_dashboard  # slow to import: only once the storage and the port are fine

    for message in IMPORTANCE_WARNINGS:  # for the server's threads: a filter of the process's
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    return optuna_dashboard.wsgi(RealParamsStorage(opened), artifact_store=store)


def bind_error(host: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return (f"cannot serve on {host}:{port}: the port is busy (another program listens "
                "there); choose another with --port")
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"cannot serve on {host}:{port}: permission denied (ports below 1024 need root)"
    if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
        return f"cannot serve on {host}:{port}: {host!r} is not an address of this machine"
    return f"cannot serve on {host}:{port}: {e.strerror or e}"
