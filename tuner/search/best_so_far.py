"""Best value so far: the curve that the report's history and ``tuner compare`` both draw, and
how many trials it takes to reach a target."""

from __future__ import annotations

import math


def best_so_far(values: list[float | None], maximize: bool) -> list[float | None]:
    """After each of ``values`` (in trial order; ``None`` for a trial without a value), the best
    finite value up to it, ``None`` before the first."""
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None and math.isfinite(v) and (
            best is None or (v > best if maximize else v < best)
        ):
            best = v
        out.append(best)
    return out


def trials_to_target(best: list[float | None], target: float, maximize: bool) -> int | None:
    """How many trials of a best-so-far curve until it first reaches ``target`` (at least as
    good), ``None`` when it never does."""
    return next((i + 1 for i, b in enumerate(best)
                 if b is not None and (b >= target if maximize else b <= target)), None)


def expected_trials(runs: list[tuple[int | None, int]]) -> float:
    """Expected trials to reach a target (COCO's expected running time, ERT), from runs given as
    ``(trials to target or None, trials run)``: every trial that any run spent, until the target
    or to its end, over the runs that reached it; ``inf`` when none did. Unlike a median, it
    stays a number when a minority of runs reach the target, and a run that fails costs its
    whole budget: it is the budget a user would spend, restarting until a run succeeds."""
    reached = sum(to is not None for to, _ in runs)
    spent = sum(to if to is not None else used for to, used in runs)
    return spent / reached if reached else math.inf


def ratio_of_expected(mine: float, base: float, base_spent: int,
                      mine_spent: int) -> tuple[float | None, str]:
    """``mine / base`` of two :func:`expected_trials`, as ``(ratio, bound)``: bound ``""`` for
    an exact ratio, ``"<"`` when only ``mine`` is finite (``base`` exceeds the ``base_spent``
    trials its runs spent), ``">"`` when only ``base`` is, ``(None, "")`` when neither."""
    if math.isfinite(mine) and math.isfinite(base):
        return mine / base, ""
    if math.isfinite(mine):
        return mine / base_spent, "<"
    if math.isfinite(base):
        return mine_spent / base, ">"
    return None, ""


def ratio_interval(mine: list[tuple[int | None, int]], base: list[tuple[int | None, int]],
                   level: float = 0.9, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """A bootstrap percentile interval (``level``) of ``expected_trials(mine) /
    expected_trials(base)``: the runs are resampled with replacement, paired by position when
    both lists are as long (``tuner compare`` gives every sampler the same seeds). A resample in
    which ``base`` never reaches the target counts as ratio 0, one in which ``mine`` never does
    as ``inf``, one where neither does is left out. Seeded: the same runs give the same
    interval."""
    import random

    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        pick_mine = [rng.randrange(len(mine)) for _ in mine]
        pick_base = pick_mine if len(base) == len(mine) else [rng.randrange(len(base))
                                                              for _ in base]
        a = expected_trials([mine[i] for i in pick_mine])
        b = expected_trials([base[i] for i in pick_base])
        if math.isfinite(a) or math.isfinite(b):
            ratios.append(a / b if math.isfinite(b) else 0.0)
    if not ratios:
        return math.nan, math.nan
    ratios.sort()
    tail = (1 - level) / 2
    return (ratios[int(tail * (len(ratios) - 1))],
            ratios[math.ceil((1 - tail) * (len(ratios) - 1))])
