"""The task record: every family's task is registered, and its name round-trips through
the report and the device protocol (contract.TASK_*)."""

import pytest

from edgeify import contract, families, metrics, tasks


@pytest.mark.parametrize("name", families.names())
def test_every_family_task_is_registered_and_round_trips(name):
    task = families.get(name).task
    assert tasks.get(task.name) is task
    assert tasks.get(task) is task
    assert families.get(name).metric == task.metric.name
    assert metrics.get(task.metric.name) is task.metric


def test_wire_names_come_from_the_contract():
    assert {t for t in tasks.names()} == {contract.TASK_SEQ_CLS, contract.TASK_CAUSAL_LM}
    assert str(tasks.CAUSAL_LM) == contract.TASK_CAUSAL_LM  # a log line prints the name


def test_unknown_task_names_the_accepted_ones():
    with pytest.raises(KeyError, match="unknown task 'translation'; accepted: sequence-classification, causal-lm"):
        tasks.get("translation")


@pytest.mark.parametrize("task", [tasks.get(n) for n in tasks.names()], ids=tasks.names())
def test_labels_and_batch_cap_follow_causality(task):
    assert task.labelled is (not task.causal)
    assert task.metric.higher_is_better is task.labelled  # accuracy up, perplexity down
    assert task.eval_batch(16) == (4 if task.causal else 16)  # an LM's logits are seq x vocab
    assert task.eval_batch(1) == 1
