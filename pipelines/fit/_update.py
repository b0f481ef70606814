"""``xfer update``: new classes and new items added to a saved model, without refitting from scratch.

The head learns the new feature file's labelled items beside its rehearsal memory
(``pipelines.heads.update_head``: prototype and kNN heads in place, linear heads refitted with
their normalisation kept, logistic regression warm-started). Before saving, the same update is scored
on a fifth of the memory and of the new items held out from it (``held_out_scores``): the old
classes after the update, and the new classes; the old classes before are the model's own
cross-validated accuracy (or the last update's). The memory kept with the updated model is chosen
again from the memory and the new items.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from featurizer import FeatureFile, FeaturizerError
from featurizer.storage import claim, guarding, location
from pipelines.fit._fit import end_to_end
from pipelines.fit._memory import labelled_rows, layer_dims, read_memory, write_memory
from pipelines.heads import (
    MEMORY_PER_CLASS,
    MEMORY_STRATEGIES,
    KNNClassifier,
    PrototypeClassifier,
    class_counts,
    quiet_small_classes,
    update_head,
)
from pipelines.models import ModelCard, head_of, load_model, save_model

HELD_OUT = 0.2  # share of the memory and of the new items held out to score the update


@dataclass
class UpdateResult:
    """What an update did, and how the model scores before and after (cross-validated)."""

    model: object
    card: ModelCard
    added_classes: list[str]
    new_items: int
    old_before: float | None  # accuracy on held-out old-class items, before the update
    old_after: float | None  # the same items, after
    new_accuracy: float | None  # held-out items of the new classes, after
    held_out: tuple[int, int] = (0, 0)  # how many old-class and new-class items scored them
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    output: object = None

    def summary(self) -> list[str]:
        lines = [f"note: {note}" for note in self.notes]
        added = ", ".join(self.added_classes) if self.added_classes else "none (more items of known classes)"
        lines.append(f"added classes: {added}; {self.new_items} new items")
        if self.old_after is not None:
            before = "" if self.old_before is None else f"{self.old_before:.3f} before (cross-validated at fit), "
            lines.append(
                f"old classes: accuracy {before}{self.old_after:.3f} after "
                f"(on {self.held_out[0]} items of the memory held out from an update like this one)"
            )
        if self.new_accuracy is not None:
            lines.append(f"new classes: accuracy {self.new_accuracy:.3f} (on {self.held_out[1]} held-out new items)")
        memory = self.card.memory
        lines.append(
            f"memory kept: {memory['items']} items, up to {memory['per_class']} per class ({memory['strategy']}); "
            f"updated in {self.seconds:.1f} s"
        )
        return lines


def check_updatable(card: ModelCard, where) -> None:
    """Refuse, in one line, the models an update cannot grow."""
    if card.tasks:
        raise FeaturizerError(f"{where} has several tasks (or label sets, or numbers): update grows one classifier")
    if card.adaptation:
        raise FeaturizerError(f"{where} aligns features to a target (--adapt): refit it with the new items instead")
    if card.params.get("semi", "none") != "none":
        raise FeaturizerError(f"{where} was fitted with an unlabelled pool (--semi): refit it with the new items")
    if card.mitigation:
        raise FeaturizerError(f"{where} was mitigated for fairness (--mitigate): refit it with the new items")
    if card.head == "zero-shot":
        raise FeaturizerError(f"{where} is a zero-shot model: it has no training items to rehearse")


def new_items(card: ModelCard, new_file) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """(X, labels, ids, layer dims) of the new file's labelled items, on the model's layers."""
    with FeatureFile(new_file) as f:
        return (*labelled_rows(f, card, new_file), layer_dims(f, card.spec.layers))


def memory_of(model_path, card: ModelCard) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(X, labels, ids, notes) of what the model remembers: its memory file, or for a model saved
    before memories were kept, its training file when that is still there."""
    if card.memory:
        return (*read_memory(model_path, card.memory, card.spec), [])
    train = card.train
    if not train or not os.path.isfile(train):
        raise FeaturizerError(
            f"{model_path} keeps no rehearsal memory and its training file {train or '(unknown)'} is gone: "
            "refit it with this version, which keeps one"
        )
    with FeatureFile(train) as f:
        X, y, ids = labelled_rows(f, card, train)
    return X, y, ids, [f"{model_path} keeps no memory: rehearsed from its training file {train}"]


def held_out_scores(
    head, Xm, ym, Xn, yn, added: list[str], counts: dict, temperature: float, seed: int
) -> tuple[float | None, float | None, tuple[int, int]]:
    """(old classes, new classes) accuracy after the update, and how many items scored each, on
    ``HELD_OUT`` of the memory and of the new items, stratified, that the update being scored did
    not see. Prototype and kNN heads
    hold their training items, so theirs is refitted on the rest of the memory first; a linear
    head's refit converges to the same optimum from any start, so it starts from the old one."""
    from sklearn.model_selection import train_test_split

    def split(y):
        rows = np.arange(len(y))
        if not len(y) or np.unique(y, return_counts=True)[1].min() < 2 or len(y) * HELD_OUT < len(set(y)):
            return None
        return train_test_split(rows, test_size=HELD_OUT, stratify=y, random_state=seed)

    old, new = split(ym), split(yn)
    if old is None or new is None:
        return None, None, (0, 0)
    (m_train, m_test), (n_train, n_test) = old, new
    start = head
    classifier = head.steps[-1][1] if isinstance(head, Pipeline) else head
    if isinstance(classifier, PrototypeClassifier | KNNClassifier):
        start = clone(head).fit(Xm[m_train], ym[m_train])
    with quiet_small_classes():
        after = update_head(start, Xn[n_train], yn[n_train], Xm[m_train], ym[m_train], temperature, counts)
    fresh = n_test[np.isin(yn[n_test], added)]
    old_after = float((after.predict(Xm[m_test]) == ym[m_test]).mean())
    new_after = float((after.predict(Xn[fresh]) == yn[fresh]).mean()) if len(fresh) else None
    scores = round(old_after, 4), None if new_after is None else round(new_after, 4)
    return (*scores, (len(m_test), len(fresh)))


def accuracy_before(card: ModelCard) -> float | None:
    """The old model's accuracy on its classes: its cross-validated score at fit, or what the last
    update measured on held-out items."""
    if card.cv_score is not None and card.cv_score == card.cv_score:
        return round(float(card.cv_score), 4)
    return card.updates[-1].get("old_after") if card.updates else None


def update(
    model_path: str | os.PathLike,
    new_file: str | os.PathLike,
    *,
    memory: int | None = None,
    strategy: str | None = None,
    seed: int = 0,
    trust: bool = False,
) -> tuple[UpdateResult, tuple]:
    """The model at ``model_path`` grown by the labelled items of the feature file ``new_file``
    (new classes, or more of the old ones), and the memory to keep with it (X, labels, ids, dims,
    per class, strategy, counts). ``memory``: items kept per class (default: as the model kept,
    else ``MEMORY_PER_CLASS``); ``strategy``: herding or random."""
    started = time.perf_counter()
    model, card = load_model(model_path, trust)
    check_updatable(card, model_path)
    per_class = memory or card.memory.get("per_class", MEMORY_PER_CLASS)
    strategy = strategy or card.memory.get("strategy", "herding")
    if strategy not in MEMORY_STRATEGIES or per_class < 1:
        raise FeaturizerError(
            f"--memory is at least 1 item per class and --strategy one of {', '.join(MEMORY_STRATEGIES)}"
        )
    Xn, yn, ids_new, dims = new_items(card, new_file)
    Xm, ym, ids_old, notes = memory_of(model_path, card)
    counts = dict(card.memory.get("counts") or class_counts(ym))
    again = np.isin(np.asarray(ids_old, dtype=object), np.asarray(ids_new, dtype=object))
    if again.any():  # items learnt before and given again: the new file's copy counts, once
        for label, n in class_counts(ym[again]).items():
            counts[label] = counts.get(label, n) - n
        Xm, ym, ids_old = Xm[~again], ym[~again], [i for i, dup in zip(ids_old, again) if not dup]
        notes.append(f"{int(again.sum())} items of {new_file} were learnt before: their new copy replaced the old")
    added = sorted(set(yn) - set(card.classes))
    head = head_of(model)
    temperature = float(card.calibration.get("temperature", 1.0)) if card.calibration else 1.0
    old_before = accuracy_before(card)
    old_after, new_accuracy, held_out = held_out_scores(head, Xm, ym, Xn, yn, added, counts, temperature, seed)
    if old_after is None:
        notes.append("a class has a single item: no held-out split, so the update's accuracy was not measured")
    with quiet_small_classes():
        updated = update_head(head, Xn, yn, Xm, ym, temperature, counts)
    if card.calibration:
        notes.append("the calibration temperature was not refitted: probabilities may be less honest than before")
    result = UpdateResult(
        model=end_to_end(card.spec, updated),
        card=replace(
            card,
            classes=[str(c) for c in updated.classes_],
            calibration={},
            cv=[],
            cv_score=None,
            train=str(os.path.abspath(new_file)),
            updates=[
                *card.updates,
                {
                    "from": str(os.path.abspath(model_path)),
                    "new_file": str(os.path.abspath(new_file)),
                    "added_classes": added,
                    "new_items": int(len(yn)),
                    "old_before": old_before,
                    "old_after": old_after,
                    "new_accuracy": new_accuracy,
                },
            ],
        ),
        added_classes=added,
        new_items=int(len(yn)),
        old_before=old_before,
        old_after=old_after,
        new_accuracy=new_accuracy,
        held_out=held_out,
        notes=notes,
    )
    X, y = np.concatenate([Xm, Xn]), np.concatenate([ym, yn])
    pool = (X, y, [*ids_old, *ids_new], dims, per_class, strategy, class_counts(yn, counts))
    result.seconds = round(time.perf_counter() - started, 2)
    return result, pool


def update_file(
    model_path: str | os.PathLike,
    new_file: str | os.PathLike,
    output: str | os.PathLike,
    *,
    force: bool = False,
    **options,
) -> UpdateResult:
    """``xfer update``: ``update``, then the grown model, its card and its new memory saved at
    ``output`` (never over the model updated: it is an input)."""
    with guarding(model_path, new_file):
        output = location(output)
        claim(output, what="model", kind="model")
        result, (X, y, ids, dims, per_class, strategy, counts) = update(model_path, new_file, **options)
        result.card.memory = write_memory(output, result.card.spec, dims, X, y, ids, per_class, strategy, counts=counts)
        save_model(result.model, result.card, output, force=force)
        result.output = output
    return result
