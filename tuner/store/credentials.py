"""Storage passwords that need not sit in a URL, a shell history or ``ps`` output.

A storage URL may leave its password out (``postgresql://tuner@db.example.org/tuner``); tuner
then takes it from, in this order:

* ``$TUNER_STORAGE_PASSWORD_FILE``: a file holding the password (one line; a trailing newline
  is dropped). This is the Docker/Kubernetes secrets convention (``/run/secrets/...``).
* ``$TUNER_STORAGE_PASSWORD``: the password itself.

A password written in the URL wins over both. For PostgreSQL, libpq's own ``$PGPASSWORD`` and
``~/.pgpass`` keep working too, because a URL without a password reaches the driver unchanged.
Nothing here ever prints the password: messages name the variable and the file, not the value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tuner.core.errors import StorageError

PASSWORD_ENV = "TUNER_STORAGE_PASSWORD"
PASSWORD_FILE_ENV = "TUNER_STORAGE_PASSWORD_FILE"

# The password runs to the last '@' before the host's '/' (it may hold spaces, even '@').
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^/]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd)=)[^&\s]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print or log)."""
    url = _CREDENTIALS.sub(lambda m: f"{m['head']}***@", url)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", url)


def scrub(text: str, url: str) -> str:
    """Remove the URL's password from an error text that might echo it."""
    from sqlalchemy.engine import make_url

    text = mask_url(text)
    try:
        password = make_url(url).password
    except Exception:
        password = None
    return text.replace(password, "***") if password else text


def password_from_environment() -> str | None:
    """The password named by ``$TUNER_STORAGE_PASSWORD_FILE`` or ``$TUNER_STORAGE_PASSWORD``."""
    path = os.environ.get(PASSWORD_FILE_ENV)
    if path:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or type(e).__name__
            raise StorageError(f"${PASSWORD_FILE_ENV}={path}: cannot read the password file "
                               f"({reason})") from None
        password = text.rstrip("\r\n")
        if not password:
            raise StorageError(f"${PASSWORD_FILE_ENV}={path}: the password file is empty")
        return password
    return os.environ.get(PASSWORD_ENV) or None


def with_password(url: str) -> str:
    """``url`` with the password from the environment filled in, when the URL names a user
    but no password (other URLs come back unchanged)."""
    if "://" not in url or url.startswith("sqlite:"):
        return url
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # a malformed URL is reported by open_storage, with the password masked
        return url
    if parsed.username is None or parsed.password is not None:
        return url
    password = password_from_environment()
    if password is None:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)
