"""Shared by the worker and storage benchmarks: the machine, a scratch PostgreSQL database,
and one fixed list of trial configurations so that compared runs do the same work."""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

from tuner.run.config import StudyConfig

PG_ADMIN = os.environ.get("TUNER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f
                      if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{len(os.sched_getaffinity(0))} cores ({model}); load average {load}"


@contextmanager
def scratch_pg() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    import sqlalchemy

    from tuner.store.storage import normalise_url

    name = f"tuner_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(normalise_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def fixed_params(config: StudyConfig, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` configurations drawn at random from the study's space (stored parameter names)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        config.space.suggest(trial)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def enqueue(study: optuna.Study, params: list[dict[str, Any]]) -> None:
    for p in params:
        study.enqueue_trial(p)
