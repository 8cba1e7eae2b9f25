"""The server's API token: where it comes from, and the file ``serve`` makes for it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tuner.core.errors import ConfigError
from tuner.store.urls import storage_file

TOKEN_ENV = "TUNER_API_TOKEN"
MIN_TOKEN = 16  # characters: a shorter one is refused


def token_path(url: str) -> Path:
    """Where ``serve`` keeps the token it makes: beside the storage's file (``tuner.db`` ->
    ``tuner.db.api-token``), else ``tuner-api-token`` in the working directory."""
    file = storage_file(url)
    return file.with_name(file.name + ".api-token") if file else Path("tuner-api-token")


def read_token(token_file: Path | None, url: str | None = None) -> tuple[str, str]:
    """The API token and where it came from: ``$TUNER_API_TOKEN``, else ``token_file``, else
    (with ``url``: the server) the file beside the storage, made with a random token at the
    first start, mode 0600."""
    given = os.environ.get(TOKEN_ENV)
    if given:
        return _checked(given.strip(), f"${TOKEN_ENV}"), f"${TOKEN_ENV}"
    path = token_file if token_file is not None else (token_path(url) if url else None)
    if path is None:
        raise ConfigError(f"the server needs its API token: set ${TOKEN_ENV} or give "
                          "--token-file (tuner serve printed where its token is)")
    if token_file is None and not path.exists():
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
        except OSError as e:
            raise ConfigError(f"cannot make the API token file {path}: {e.strerror or e}; set "
                              f"${TOKEN_ENV} or give --token-file") from None
        return token, str(path)
    try:
        return _checked(path.read_text().strip(), str(path)), str(path)
    except OSError as e:
        raise ConfigError(f"cannot read the API token from {path}: {e.strerror or e}") from None


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN:
        raise ConfigError(f"the API token in {where} is too short ({len(token)} characters; "
                          f"at least {MIN_TOKEN}): anyone could guess it")
    return token
