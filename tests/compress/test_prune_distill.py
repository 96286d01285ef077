"""--distill and --prune on the tiny starters: shapes, saved/reloaded models, exports,
measured importance, and training through Accelerate with checkpoints and resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from edgeify import compress, families
from edgeify.calibration import synthetic
from edgeify.calibration.tokenize import encode_classification, encode_language_model
from edgeify.compress import distill, prune
from edgeify.compress.train import KDLoss, TrainSettings, distill_train
from edgeify.errors import UsageError
from edgeify.families import loader
from edgeify.tasks import CAUSAL_LM
from edgeify.families.anatomy import blocks

FAMILIES = families.names()  # every registered family


def _data(family, tokenizer, id2label, n=96, seq_len=48) -> compress.TrainData:
    if family.task == CAUSAL_LM:
        b = encode_language_model(tokenizer, synthetic.paragraphs(n, seed=7), seq_len, family.onnx_inputs)
        return compress.TrainData(b.inputs, None)
    pairs = synthetic.labelled_reviews(n, seed=7)
    label2id = {v: k for k, v in id2label.items()}
    b = encode_classification(tokenizer, [t for t, _ in pairs], [label2id[lab] for _, lab in pairs],
                              seq_len, family.onnx_inputs)
    return compress.TrainData(b.inputs, b.labels)


def _load(starter_dir, name):
    loaded = loader.load_local(starter_dir(name))
    data = _data(loaded.family, loaded.tokenizer, loaded.model.config.id2label)
    return loaded, data


def _logits(model, data, rows=8):
    feeds = {k: torch.from_numpy(v[:rows]) for k, v in data.inputs.items()}
    with torch.no_grad():
        return model(**feeds).logits


def _loss(model, family, data):
    feeds = {k: torch.from_numpy(v[:32]) for k, v in data.inputs.items()}
    labels = None if data.labels is None else torch.from_numpy(data.labels[:32])
    with torch.no_grad():
        return prune._loss(model, feeds, labels, family.task == CAUSAL_LM).item()


@pytest.mark.parametrize("name", FAMILIES)
def test_pruned_model_saves_loads_and_exports(name, starter_dir, tmp_path):
    """A pruned model (uneven heads/neurons per block) reloads exactly and exports to ONNX."""
    from edgeify.export import get_backend
    from edgeify.runtimes import open_runner

    loaded, data = _load(starter_dir, name)
    family, model = loaded.family, copy.deepcopy(loaded.model)
    scores = prune.importance(model, family, data, n_batches=2, batch_size=16, seed=0)
    keep = prune.plan(model, family, scores, 0.4)
    prune.apply_plan(model, family, keep)
    assert model.config.edgeify_shape, "uneven per-block shape must be recorded"
    before = sum(p.numel() for b in blocks(loaded.model, family.anatomy) for p in b.parameters())
    after = sum(p.numel() for b in blocks(model, family.anatomy) for p in b.parameters())
    assert 0.38 <= 1 - after / before <= 0.42, 1 - after / before
    model.save_pretrained(tmp_path / "m")
    loaded.tokenizer.save_pretrained(tmp_path / "m")
    again = loader.load_local(tmp_path / "m")
    torch.testing.assert_close(_logits(again.model, data), _logits(model, data))
    (tmp_path / "onnx").mkdir()
    art = get_backend("onnx").export(again.model, family, {k: v[:4] for k, v in data.inputs.items()},
                                     tmp_path / "onnx")
    got = open_runner(art.path, 1).run({k: v[:8] for k, v in data.inputs.items()})
    np.testing.assert_allclose(got, _logits(model, data).numpy(), atol=2e-4, rtol=1e-3)


def test_importance_ranks_what_matters(starter_dir):
    """Cutting the heads and neurons ranked least important costs less than cutting the
    most important ones: the score measures something."""
    loaded, data = _load(starter_dir, "electra")
    family, model = loaded.family, loaded.model
    # the test-session starter trains for seconds only: fit it to this data first, so that
    # its heads and neurons carry something to lose
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    feeds = {k: torch.from_numpy(v) for k, v in data.inputs.items()}
    model.train()
    for _ in range(15):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(**feeds).logits, torch.from_numpy(data.labels)).backward()
        opt.step()
    model.eval()
    scores = prune.importance(copy.deepcopy(model), family, data, n_batches=6, batch_size=16, seed=0)
    low = prune.plan(model, family, scores, 0.4)
    flipped = {k: ([[-x for x in row] for row in v] if k in ("heads", "neurons") else
                   ([-x for x in v] if k == "layers" else v)) for k, v in scores.items()}
    high = prune.plan(model, family, flipped, 0.4)
    losses = {}
    for label, keep in (("low", low), ("high", high)):
        m = copy.deepcopy(model)
        prune.apply_plan(m, family, keep)
        with torch.no_grad():
            losses[label] = torch.nn.functional.cross_entropy(m(**feeds).logits,
                                                              torch.from_numpy(data.labels)).item()
    assert losses["low"] < losses["high"], losses


def test_albert_shared_block_pruned_once(starter_dir):
    """ALBERT's one shared block: pruning it prunes every application, no layer is removed."""
    loaded, data = _load(starter_dir, "albert")
    family, model = loaded.family, copy.deepcopy(loaded.model)
    assert len(blocks(model, family.anatomy)) == 1 < model.config.num_hidden_layers
    scores = prune.importance(model, family, data, n_batches=2, batch_size=16, seed=0)
    assert scores["layers"] == []
    prune.apply_plan(model, family, prune.plan(model, family, scores, 0.3))
    assert model.config.num_hidden_layers == loaded.model.config.num_hidden_layers
    assert _logits(model, data).shape == _logits(loaded.model, data).shape


@pytest.mark.parametrize("name", FAMILIES)
def test_student_layers(name, starter_dir, tmp_path):
    loaded, _ = _load(starter_dir, name)
    family, teacher = loaded.family, loaded.model
    student, keep, how = distill.make_student(teacher, family, 2)
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    if name == "albert":  # fewer applications of the shared block: same parameters
        assert student.config.num_hidden_layers == 2 and params(student) == params(teacher)
    else:
        assert keep == [1, 3] and params(student) < params(teacher)
    if name == "gpt-neo":  # each kept layer keeps its global/local attention
        assert student.config.attention_layers == [teacher.config.attention_layers[i] for i in keep]
        kinds = [b.attn.attention_type for b in blocks(student, family.anatomy)]
        assert kinds == student.config.attention_layers
    student.save_pretrained(tmp_path)
    again = family.load_model(str(tmp_path))
    assert again.config.to_dict()[family.anatomy.layers_key] == 2
    with pytest.raises(UsageError, match="between 1 and"):
        distill.make_student(teacher, family, 99)


def test_gpt_neo_student_local_window_still_applies(starter_dir):
    """A local layer kept in the student still masks beyond its window (tokens far back
    do not change a local layer's output)."""
    loaded, _ = _load(starter_dir, "gpt-neo")
    student, _, _ = distill.make_student(loaded.model, loaded.family, 2)
    local = [b for b in blocks(student, loaded.family.anatomy) if b.attn.attention_type == "local"]
    assert local, "the student kept a local-attention layer"
    window = student.config.window_size
    bias = local[0].attn.attention.bias[0, 0]
    assert not bool(bias[window + 5, 0]) and bool(bias[window + 5, 6])


def test_distill_training_lowers_the_loss(starter_dir):
    loaded, data = _load(starter_dir, "electra")
    student, keep, _ = distill.make_student(loaded.model, loaded.family, 2)
    info = distill_train(student, loaded.model, data, layer_map=[(j + 1, k + 1) for j, k in enumerate(keep)],
                         causal=False, epochs=3, lr=1e-3, batch_size=16, loss=KDLoss(),
                         settings=TrainSettings(threads=2, progress=False), name="t", fp="x")
    assert info["epoch_loss"][-1] < info["epoch_loss"][0], info["epoch_loss"]


def test_augmented_rows_are_unlabelled_and_shorter():
    inputs = {"input_ids": np.array([[2, 10, 11, 12, 13, 3, 0, 0]] * 50),
              "attention_mask": np.array([[1, 1, 1, 1, 1, 1, 0, 0]] * 50)}
    data = compress.TrainData(inputs, np.ones(50, dtype=np.int64))
    out = distill.augment_rows(data, 1, {2, 3}, 0, seed=0)
    assert len(out) == 100 and (out.labels[50:] == -100).all()
    new = out.inputs["attention_mask"][50:].sum(1)
    assert new.max() <= 6 and new.min() >= 2 and new.mean() < 6
    assert (out.inputs["input_ids"][50:, 0] == 2).all()  # specials are never dropped


def _train(student, teacher, data, ckpt, resume=False, on_epoch_end=None):
    return distill_train(student, teacher, data, layer_map=[(1, 2), (2, 4)], causal=False, epochs=3,
                         lr=1e-3, batch_size=16, loss=KDLoss(),
                         settings=TrainSettings(checkpoint_dir=ckpt, resume=resume, seed=3, threads=2,
                                                progress=False),
                         name="distill", fp="fp-1", on_epoch_end=on_epoch_end)


def test_resume_after_an_interrupted_epoch(starter_dir, tmp_path):
    """Ctrl-C during epoch 3 keeps epoch 2's checkpoint; --resume continues from it and ends
    with exactly the weights of an uninterrupted run (seeded order, optimizer, scheduler and
    RNG states restored)."""
    loaded, data = _load(starter_dir, "electra")
    family = loaded.family
    make = lambda: distill.make_student(loaded.model, family, 2)[0]  # noqa: E731

    straight = make()
    _train(straight, loaded.model, data, tmp_path / "a")

    def interrupt(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    first = make()
    with pytest.raises(KeyboardInterrupt):
        _train(first, loaded.model, data, tmp_path / "b", on_epoch_end=interrupt)
    resumed = make()
    info = _train(resumed, loaded.model, data, tmp_path / "b", resume=True)
    assert info["resumed_from_epoch"] == 2
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)

    with pytest.raises(UsageError, match="different run"):
        distill_train(make(), loaded.model, data, layer_map=[], causal=False, epochs=3, lr=1e-3, batch_size=16,
                      loss=KDLoss(), settings=TrainSettings(checkpoint_dir=tmp_path / "b", resume=True,
                                                            progress=False),
                      name="distill", fp="another-config")


def test_run_stages_resume_skips_finished_stages(starter_dir, tmp_path):
    loaded, data = _load(starter_dir, "electra")
    stage_data = compress.StageData(data, [t for t, _ in synthetic.labelled_reviews(96, seed=7)])
    settings = TrainSettings(checkpoint_dir=tmp_path, seed=0, threads=2, progress=False)
    configs = [compress.TrimVocab(), compress.Distill(student_layers=2, epochs=1, batch_size=16)]
    stages = compress.run_stages(loaded.model, loaded.tokenizer, loaded.family, configs, stage_data, settings,
                                 log_fn=lambda *_: None)
    assert [s.name for s in stages] == ["distill", "trim-vocab"]  # compress.ORDER, whatever was given
    logs = []
    again = compress.run_stages(loaded.model, loaded.tokenizer, loaded.family, configs, stage_data,
                                TrainSettings(checkpoint_dir=tmp_path, resume=True, progress=False),
                                log_fn=logs.append)
    assert sum("finished in an earlier run" in m for m in logs) == 2
    torch.testing.assert_close(_logits(again[0].model, data), _logits(stages[0].model, data))
    # each stage's own time (the budget search reports it), kept with the stage it timed
    assert stages[0].info["seconds"] > 0 and [s.info["seconds"] for s in again] == [s.info["seconds"] for s in stages]


@pytest.mark.parametrize("fmt", ["openvino", "tflite"])
@pytest.mark.parametrize("name", ["electra", "gpt-neo"])
def test_pruned_model_exports_to_openvino_and_tflite(name, fmt, starter_dir, tmp_path):
    """Uneven heads per block (and GPT-Neo's head-count attribute) survive every exporter."""
    from edgeify.export import check_installed, get_backend
    from edgeify.runtimes import open_runner

    backend = get_backend(fmt)
    try:
        check_installed(backend)
    except UsageError as e:
        pytest.skip(str(e))
    loaded, data = _load(starter_dir, name)
    model = copy.deepcopy(loaded.model)
    scores = prune.importance(model, loaded.family, data, n_batches=2, batch_size=16, seed=0)
    prune.apply_plan(model, loaded.family, prune.plan(model, loaded.family, scores, 0.4))
    (tmp_path / fmt).mkdir()
    art = backend.export(model, loaded.family, {k: v[:4] for k, v in data.inputs.items()}, tmp_path / fmt)
    row = {k: v[:1] for k, v in data.inputs.items()}
    got = open_runner(art.path, 1).run(row)
    np.testing.assert_allclose(got, _logits(model, data, rows=1).numpy(), atol=2e-3, rtol=1e-2)


@pytest.mark.parametrize("name", FAMILIES)
def test_narrower_student(name, starter_dir, tmp_path):
    """--student-hidden: whole heads and hidden dims cut consistently everywhere; the student
    is a plain model of the smaller config (reloads and exports like any other)."""
    from edgeify.compress.width import narrow
    from edgeify.export import get_backend
    from edgeify.runtimes import open_runner

    loaded, data = _load(starter_dir, name)
    family, student = loaded.family, copy.deepcopy(loaded.model)
    hidden = student.config.hidden_size
    scores = prune.importance(student, family, data, 2, 16, 0, score_layers=False)
    dims = narrow(student, family, hidden // 2, data, scores["heads"])
    assert len(dims) == hidden // 2 and student.config.hidden_size == hidden // 2
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert params(student) < 0.6 * params(loaded.model)
    if name == "gpt-neo":
        assert student.get_output_embeddings().weight is student.get_input_embeddings().weight
    student.save_pretrained(tmp_path / "m")
    again = family.load_model(str(tmp_path / "m"))
    torch.testing.assert_close(_logits(again, data), _logits(student, data))
    (tmp_path / "onnx").mkdir()
    art = get_backend("onnx").export(again, family, {k: v[:4] for k, v in data.inputs.items()}, tmp_path / "onnx")
    got = open_runner(art.path, 1).run({k: v[:8] for k, v in data.inputs.items()})
    np.testing.assert_allclose(got, _logits(student, data).numpy(), atol=2e-4, rtol=1e-3)
    with pytest.raises(UsageError, match="multiple of the head size"):
        narrow(copy.deepcopy(loaded.model), family, hidden // 2 + 1, data, scores["heads"])
