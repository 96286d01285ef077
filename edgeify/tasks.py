"""What a model is asked to do, and what follows from it, in one record per task.

A family names its task; every stage asks the task (`task.causal`, `task.metric`,
`task.default_n_eval`) instead of comparing strings, so what "a causal LM" implies for
data, evaluation, export and generation is written once here. The names are the ones the
report and the device protocol carry (`contract.TASK_*`): a report's `model.task` is
`task.name`, and `get(name)` turns it back. Standard library only: every layer reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeify import contract, metrics


@dataclass(frozen=True)
class Task:
    name: str
    metric: metrics.Metric
    # Next-token logits at every position: evaluated on token windows (with context),
    # no labels, a cached decoder to export and generation to time.
    causal: bool
    # Evaluation rows (classifier texts, LM windows) when --n-eval is not given.
    default_n_eval: int
    # Largest evaluation batch: an LM's logits are seq x vocab per sample.
    max_eval_batch: int | None = None

    @property
    def labelled(self) -> bool:
        """Its evaluation rows carry labels (a classifier's data needs a label column)."""
        return not self.causal

    def eval_batch(self, wanted: int) -> int:
        return wanted if self.max_eval_batch is None else max(1, min(wanted, self.max_eval_batch))

    def __str__(self) -> str:
        return self.name


SEQ_CLS = Task(contract.TASK_SEQ_CLS, metrics.ACCURACY, causal=False, default_n_eval=1000)
CAUSAL_LM = Task(contract.TASK_CAUSAL_LM, metrics.PERPLEXITY, causal=True, default_n_eval=100, max_eval_batch=4)
_TASKS = {t.name: t for t in (SEQ_CLS, CAUSAL_LM)}


def get(task: str | Task) -> Task:
    """The task named `task` (a report's or the device protocol's string), or `task` itself."""
    if isinstance(task, Task):
        return task
    if task not in _TASKS:
        raise KeyError(f"unknown task {task!r}; accepted: {', '.join(_TASKS)}")
    return _TASKS[task]


def names() -> list[str]:
    return list(_TASKS)
