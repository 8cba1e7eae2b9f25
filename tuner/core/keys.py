"""Every name tuner stores in a study, in one place.

Stored studies outlive the code that wrote them: these strings are a file format. Renaming one
breaks every study stored before the change (a test resumes such a study from a fixture).
"""

# study user attributes
CONFIG_ATTR = "tuner:config"  # the validated study file, so a resume needs only the name
VERSION_ATTR = "tuner:version"  # the tuner that created the study
TASK_ATTR = "tuner:task"  # "classification" or "regression": what the study's data turned out to be
QUEUE_ATTR = "tuner:queue"  # a submitted study's place in the queue (tuner.store.queue.QueueEntry)

# trial user attributes
FAIL_REASON = "fail_reason"  # why a FAIL trial failed, one line: "KeyError: 'x' (at f.py:3 in g)"
PRUNE_REASON = "prune_reason"  # why a PRUNED trial was pruned: "dead init (…)", "diverged …"
CURVE = "curve"  # the learning curve: {"train_loss": [...], "val_loss": [...], ...} per step
INIT_VERDICT = "init_verdict"  # tuner.nn.health.VERDICTS
INIT_LAYER_STD = "init_layer_std"  # activation std per hidden layer of the initial network
INIT_REASON = "init_reason"  # why the init is not healthy
INIT_FIRST_GRAD = "init_first_grad"  # |grad W1| / |W1| of the initial network (one backward)
UNTRAINED_VALUE = "untrained_value"  # the metric of the initial network (ctx.check_init baseline)
LOG2_SUFFIX = "_log2"  # a power-of-two parameter is searched as NAME_log2; NAME holds the value
FEASIBLE = "feasible"  # with [study] constraints: whether the trial satisfies them all
CONSTRAINT_VALUES = "constraint_values"  # with [study] constraints: how far it is from each (<= 0:
#   satisfied), what Optuna's constraints_func reads (it runs before the values are stored)
WARM_START = "warm_start"  # a prior observation copied from another study: "NAME #number"
PACK_OF = "pack_of"  # a packed claim's later trial: the number of the trial whose draw it shares
WORKER = "worker"  # the pool worker that ran the trial ("host:pid/slot"), set as it begins

# The pool's own record: a study of this name (hidden from every listing) whose user attributes
# are the pool workers' last heartbeats, "worker:ID" -> {"host", "pid", "study", "trial", …}.
# Study names that start with "tuner:" are tuner's own; a study file may not use them.
RESERVED_PREFIX = "tuner:"
POOL_STUDY = "tuner:pool"
POOL_WORKER_PREFIX = "worker:"

# trial system attributes
CREATE_TOKEN = "tuner:create_token"  # which creation call made the trial (tuner.store.rdb)


def stored_budget(study_user_attrs: dict[str, object]) -> int | None:
    """The budget (``[study] n_trials``) stored in a tuner study's config attribute; ``None``
    for a study without one (plain Optuna's). ``resume --n-trials`` may raise it while other
    processes run, so a process that keeps to it reads it again before each claim."""
    config = study_user_attrs.get(CONFIG_ATTR)
    budget = config.get("study", {}).get("n_trials") if isinstance(config, dict) else None
    return budget if isinstance(budget, int) and not isinstance(budget, bool) else None
