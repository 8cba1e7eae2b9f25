"""Opening a storage URL (resolved by :mod:`tuner.store.urls`: ``--storage`` >
``$TUNER_STORAGE`` > ``sqlite:///tuner.db``).

Any SQLAlchemy URL works (``postgresql://`` uses psycopg 3); ``journal:PATH`` is an Optuna
journal file. Passwords never appear in messages: :func:`tuner.store.credentials.mask_url` masks
anything printed.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from tuner.core.errors import StorageError
from tuner.store.buffered import BufferedRDBStorage
from tuner.store.credentials import mask_url, scrub, with_password
from tuner.store.rdb import storage_settings
from tuner.store.urls import (  # noqa: F401  (re-exported: where callers open a storage)
    DEFAULT_URL,
    ENV_VAR,
    JOURNAL_PREFIX,
    SQLITE_TIMEOUT_S,
    check_not_storage,
    normalise_url,
    resolve_url,
    sqlite_path,
    storage_file,
)

SCHEMA_RACE_ATTEMPTS = 5  # opens of a new database that lose the race to create its tables
# An unreachable host fails in 10 s instead of minutes; keepalives notice a silently dead
# server (cut network) so the reconnection logic in tuner.store.rdb can take over. Pooled
# connections are not pinged before each use (a round trip per transaction): one the server
# closed fails its call, which tuner.store.rdb repeats at once on a new connection.
PG_CONNECT_ARGS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
                   "keepalives_interval": 10, "keepalives_count": 3}


def open_storage(url: str | None = None, *, must_exist: bool = False) -> BaseStorage:
    """Open (and, unless ``must_exist``, create) the storage at ``url`` (resolved as above).

    ``must_exist`` is for read-only commands: a missing SQLite or journal file is an error
    rather than a new empty database.
    """
    url = resolve_url(url)
    if url.startswith(JOURNAL_PREFIX):
        return _open_journal(url[len(JOURNAL_PREFIX):], must_exist)
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    shown = mask_url(url)  # the user's spelling, not the driver-qualified one
    url = normalise_url(with_password(url))
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except exc.NoSuchModuleError:
        dialect = url.partition(":")[0]
        raise StorageError(
            f"storage URL {shown!r}: unknown database dialect {dialect!r}; use "
            "sqlite:///FILE, postgresql://USER@HOST/DB, mysql+pymysql://… or journal:FILE"
        ) from None
    except (exc.ArgumentError, ValueError) as e:
        raise StorageError(
            f"malformed storage URL {shown!r} ({scrub(str(e), url)}); expected e.g. "
            "sqlite:///tuner.db, postgresql://USER@HOST/DB or journal:FILE"
        ) from None
    engine_kwargs: dict = {}
    path = sqlite_path(url)
    if parsed.get_backend_name() == "sqlite":
        if path is None:  # each connection would get a database of its own, gone at exit
            raise StorageError(f"storage {shown} is an in-memory SQLite database: a study there "
                               "is lost when tuner exits; give a file, e.g. sqlite:///tuner.db")
        if must_exist and not path.is_file():
            raise StorageError(f"no storage at {shown} (file {path} does not exist)")
        if not path.parent.is_dir():
            raise StorageError(f"storage {shown}: folder {path.parent} does not exist")
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    elif parsed.get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = dict(PG_CONNECT_ARGS)
    settings = storage_settings()  # heartbeats, retry window (bad $TUNER_* values fail here)
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            storage = BufferedRDBStorage(url, shown=shown, engine_kwargs=engine_kwargs,
                                          **settings)
            if path is not None:
                _enable_wal(storage)
            break
        except Exception as e:  # sqlalchemy/psycopg errors, optuna's schema-version error …
            if attempt + 1 < SCHEMA_RACE_ATTEMPTS and _lost_schema_race(e):
                time.sleep(0.05 * 2**attempt * (1 + random.random()))
                continue
            missing = _missing_driver(e)
            if missing is not None:
                raise StorageError(f"cannot open storage {shown}: {missing}") from None
            raise StorageError(f"cannot open storage {shown}: {_reason(e, url)}") from None
    return storage


# The module SQLAlchemy imports for a URL's driver -> the package that provides it.
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "pymysql": "PyMySQL",
                   "mysql": "mysql-connector-python", "psycopg2": "psycopg2-binary",
                   "psycopg": "psycopg[binary]",
                   "asyncpg": "asyncpg", "pg8000": "pg8000", "oracledb": "oracledb",
                   "cx_Oracle": "cx_Oracle", "pyodbc": "pyodbc", "pymssql": "pymssql"}


def _missing_driver(e: BaseException) -> str | None:
    """"its database driver is not installed …" when opening failed on a missing driver
    module (Optuna reports it as "Failed to import DB access module"), else ``None``."""
    seen: BaseException | None = e
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            top = seen.name.partition(".")[0]
            package = DRIVER_PACKAGES.get(top, top)
            hint = (" (or write mysql+pymysql://… and install PyMySQL)"
                    if top == "MySQLdb" else "")
            return (f"its database driver is not installed (no module {top!r}); install it "
                    f"with: pip install {package}{hint}")
        seen = seen.__cause__ or seen.__context__
    return None


def _lost_schema_race(e: Exception) -> bool:
    """Whether opening failed because another process created the tables at the same moment.

    Optuna creates the schema of an empty database when it opens it (check, then create), so
    several workers started together on a new SQLite file see "table studies already exists"
    or a duplicate alembic version row; switching the new file to WAL can find it locked by
    the others' schema work. Opened again, the schema is there and is only read."""
    from sqlalchemy import exc

    if isinstance(e, optuna.exceptions.StorageInternalError) and isinstance(
            e.__cause__, exc.DBAPIError):  # Optuna's wrapper around a failed commit
        e = e.__cause__
    text = str(getattr(e, "orig", None) or e).lower()
    return isinstance(e, exc.IntegrityError) or (isinstance(e, exc.DBAPIError) and any(
        words in text for words in ("already exists", "duplicate", "database is locked",
                                    "deadlock", "could not serialize")))


def _reason(e: Exception, url: str) -> str:
    if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__  # "an exception is raised during the commit" says nothing; its cause does
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    first = next((line for line in text if line.strip()), type(e).__name__)
    return scrub(first.strip(), url)


def _enable_wal(storage: optuna.storages.RDBStorage) -> None:
    # WAL lets readers (dashboard, `tuner show`) work while a writer runs; the mode is stored
    # in the database file, so setting it once is enough.
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    # With WAL, synchronous=NORMAL syncs the disk at checkpoints, not at every commit. A trial
    # makes ~25 small commits, and their fsyncs were about half its storage time (see
    # BENCHMARKS.md, issue 7). A crashed process loses nothing; a power cut at worst the last
    # commits, never the file's integrity. The pragma is per connection: set it on each.
    from sqlalchemy import event

    event.listen(storage.engine, "connect", _synchronous_normal)
    storage.engine.dispose()  # the pooled connections predate the listener


def _synchronous_normal(dbapi_connection: object, record: object) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _open_journal(path: str, must_exist: bool) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    p = Path(path).expanduser()
    if not path:
        raise StorageError("journal storage needs a file: journal:PATH")
    if must_exist and not p.is_file():
        raise StorageError(f"no storage at journal:{p} (file does not exist)")
    if not p.parent.is_dir():
        raise StorageError(f"storage journal:{p}: folder {p.parent} does not exist")
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(p)))
    except Exception as e:
        raise StorageError(f"cannot open journal storage {p}: {e}") from None
