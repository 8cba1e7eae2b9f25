"""Submitting a study: checked and stored as ``tuner run --create-only`` does, then queued."""

from __future__ import annotations

from tuner.run.config import StudyConfig
from tuner.run.study import run as run_study
from tuner.service.queue import describe
from tuner.store.queue import QUEUED, QueuedStudy, QueueEntry


def submit(config: StudyConfig, url: str, *, priority: int = 0, max_parallel: int | None = None,
           warm_start_storage: str | None = None) -> QueuedStudy:
    """Check and store ``config``'s study as ``run --create-only`` does (its data loaded, its
    device checked: bad input is an error and nothing is stored) and queue it. Submitting a
    stored study again updates its priority and limit and queues it again (it keeps its place
    among equals)."""
    result = run_study(config, url, create_only=True, warm_start_storage=warm_start_storage)
    study = result.study
    before = QueueEntry.of(study.user_attrs)
    entry = QueueEntry(QUEUED, priority, max_parallel,
                       before.submitted if before is not None else QueueEntry().submitted)
    entry.store(study._storage, study._study_id)
    return describe(study._storage, config.name)
