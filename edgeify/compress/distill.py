"""--distill: a shallower student of the same family, initialised from the teacher.

The student copies every k-th teacher layer (evenly spaced, ending with the last, whose
output the head was trained on) and learns from the teacher's soft labels and the hidden
states of exactly those layers. ALBERT stores one shared block and applies it N times;
its student applies the same block fewer times (same parameters, less compute). An
ALBERT whose layers are all distinct (one group per layer, like the MiniLM one) is
handled like ELECTRA. GPT-Neo keeps each kept layer's global/local attention kind.
"""

from __future__ import annotations

import copy

import numpy as np

from edgeify.compress import Distill, handler
from edgeify.compress.train import IGNORE, TrainData, distill_train, evenly_spaced
from edgeify.errors import UsageError
from edgeify.families.anatomy import blocks, keep_layers


def make_student(teacher, family, n_layers: int):
    """(student, kept teacher layers, how it was built); the teacher is not changed."""
    anatomy = family.anatomy
    applied = getattr(teacher.config, anatomy.layers_key)
    stored = len(blocks(teacher, anatomy))
    keep = evenly_spaced(applied, n_layers)
    student = copy.deepcopy(teacher)
    if stored == applied:
        keep_layers(student, anatomy, keep)
        how = f"teacher layers {keep} (of {applied})"
    elif stored == 1:
        setattr(student.config, anatomy.layers_key, n_layers)
        how = (f"the shared block applied {n_layers} times instead of {applied}" if n_layers != applied
               else f"the shared block applied {applied} times, as in the teacher")
    else:
        raise UsageError(f"--distill: {family.name} with {stored} stored blocks applied {applied} times "
                         "is not supported (edgeify handles one shared block or one block per layer)")
    return student, keep, how


def augment_rows(data: TrainData, copies: int, special_ids: set[int], pad_id: int, seed: int,
                 drop: float = 0.1) -> TrainData:
    """`copies` extra rows per row with ~10% of the ordinary tokens dropped, labels unknown.

    The teacher labels them through the KD loss; the hard-label loss ignores them.
    """
    if copies <= 0:
        return data
    rng = np.random.default_rng([seed, 7])
    ids = data.inputs["input_ids"]
    out = {k: [v] for k, v in data.inputs.items()}
    labels = [data.labels]
    for _ in range(copies):
        new = {k: np.zeros_like(v) for k, v in data.inputs.items()}
        new["input_ids"][:] = pad_id
        for r, row in enumerate(ids):
            real = row[data.inputs["attention_mask"][r] > 0] if "attention_mask" in data.inputs else row
            keep = np.array([t in special_ids or rng.random() >= drop for t in real.tolist()], dtype=bool)
            kept = real[keep]
            new["input_ids"][r, :len(kept)] = kept
            if "attention_mask" in new:
                new["attention_mask"][r, :len(kept)] = 1
        for k in out:
            out[k].append(new[k])
        labels.append(np.full_like(data.labels, IGNORE))
    return TrainData({k: np.concatenate(v) for k, v in out.items()}, np.concatenate(labels))


@handler(Distill)
def _distill(teacher, tokenizer, family, config: Distill, data, settings, fingerprint: str = ""):
    applied = getattr(teacher.config, family.anatomy.layers_key)
    n_layers = config.student_layers or max(1, applied // 2)
    student, keep, how = make_student(teacher, family, n_layers)
    causal = family.task.causal
    train = data.train
    if not causal and config.augment:
        train = augment_rows(train, config.augment, set(tokenizer.all_special_ids),
                             tokenizer.pad_token_id or 0, settings.seed)
    dims = None
    if config.student_hidden:
        from edgeify.compress.prune import importance
        from edgeify.compress.width import narrow

        scores = importance(student, family, data.train, 16, config.batch_size, settings.seed, score_layers=False)
        dims = narrow(student, family, config.student_hidden, data.train, scores["heads"])
        how += f", hidden {teacher.config.hidden_size} -> {config.student_hidden} (most important heads and dims)"
    # hidden_states[0] is the embeddings' output; student layer j matches teacher layer keep[j]
    # (ALBERT with its embedding projection: hidden_states[0] is after it, also comparable)
    layer_map = [(j + 1, k + 1) for j, k in enumerate(keep)]
    info = distill_train(student, teacher, train, layer_map=layer_map, causal=causal, epochs=config.epochs,
                         lr=config.lr, batch_size=config.batch_size, loss=config.loss, settings=settings,
                         name="distill", fp=fingerprint, teacher_dims=dims)
    return student, tokenizer, {"teacher_layers": applied, "student_layers": n_layers, "init": how,
                                "augmented_rows": len(train) - len(data.train), **info}
