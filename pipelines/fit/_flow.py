"""``fit``, what ``xfer fit`` runs: read a feature file, choose the layer (or try them all with
``layer='auto'``), search the head's grid with stratified folds, refit on everything and describe
the result in a ``ModelCard``; several label columns, label sets or numbers go to the tasks.
``baseline=True`` also fits the same head on a representation with no transfer (raw pixels or
TF-IDF), to show whether the pretrained features help.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import clone

from featurizer import FeatureFile, FeatureSpec, FeaturizerError
from featurizer.spec import check_compatible
from featurizer.storage import claim, default_outputs, file_sha256, guarding, is_url, location, same_location
from pipelines.adapt import Adaptation, effective_size
from pipelines.fit._fit import (
    AUTO,
    AUTO_FULL_CV,
    CVRow,
    FitResult,
    adaptation,
    baseline_warnings,
    calibrate_head,
    candidate_layers,
    check_labels,
    choose_layers,
    cross_validate,
    end_to_end,
    fit_baseline,
    fit_fixed,
    labelled,
    labelled_views,
    read_xy,
    screen_candidates,
    small_class_warnings,
    stack_views,
)
from pipelines.fit._memory import remembers, training_memory
from pipelines.fit._mitigate import check_mitigation, mitigated_head, mitigation_note, training_groups
from pipelines.fit._tasks import fit_tasks, read_targets
from pipelines.fit._zeroshot import DEFAULT_TEMPLATES, fit_zero_shot
from pipelines.heads import CLASSES, MEMORY_PER_CLASS, SEMI_METHODS, SemiChoice, choose_semi, semi_estimator, stack_pool
from pipelines.models import ModelCard, save_model


def fit(
    train: str | os.PathLike,
    head: str = "logreg",
    layer=None,
    *,
    normalise: str | None = None,
    baseline: bool = False,
    seed: int = 0,
    n_jobs: int | None = None,
    params: dict | None = None,
    calibrate: bool = True,
    progress: bool = False,
    adapt: str | None = None,
    target: str | os.PathLike | None = None,
    label_columns: tuple[str, ...] = (),
    kinds: dict[str, str] | None = None,
    unlabelled: str | os.PathLike | None = None,
    semi: str | None = None,
    mitigate: str | None = None,
    groups: str | os.PathLike | None = None,
) -> FitResult:
    """Fit ``head`` on the feature file ``train``; ``layer``: layer names or indices (concatenated), or ``auto``.

    ``layer='auto'``, the default, considers every layer of the file and their concatenation: with more than
    ``AUTO_FULL_CV`` of them, LogME screens them and only the best ``AUTO_FULL_CV`` are
    cross-validated (the others are listed with their LogME). ``params`` fixes the head's
    hyperparameters (``{"C": 1.0}``; ``{}`` for its defaults): no cross-validation then, so nothing
    is scored, ``layer='auto'`` cannot choose and the default is the file's first layer.
    ``calibrate`` divides a logistic regression's logits by a temperature fitted on its out-of-fold
    scores (``pipelines._calibration``): predictions do not change, probabilities become honest.
    ``progress`` shows a bar over the candidates when the fit takes more than a second. ``adapt``
    (``mean``, ``coral``, ``subspace``) aligns the source features to the unlabelled feature file
    ``target`` (``pipelines._adapt``) and saves the target's map in the model.

    ``unlabelled``: a feature file of unlabelled items of the same spec (the pool); ``semi`` (default
    ``auto`` with a pool) chooses how to use it: ``pca``, ``self-training``, ``spreading``, ``none`` or ``auto``
    (``pipelines.heads.choose_semi``: by cross-validation on the labelled items, the plain head unless
    a method beats it beyond noise).

    ``label_columns`` name the input's columns to learn (default: the file's labels); ``kinds``
    overrides how a column is read (``pipelines._targets``). One column of classes is fitted here;
    several, or label sets or numbers, by ``pipelines._tasks.fit_tasks``.

    ``mitigate`` (``demographic_parity``, ``equalized_odds``) refits the chosen head under that
    fairness constraint with each item's group from ``groups``, a CSV of id,group covering every
    labelled item (``pipelines.fit._mitigate``); the model predicts without groups.
    """
    from tqdm.auto import tqdm

    if (adapt is None) != (target is None):
        raise FeaturizerError("--adapt and --target go together: the method, and the unlabelled target feature file")
    semi = check_semi(semi, unlabelled, adapt)
    check_mitigation(mitigate, groups, adapt=adapt, unlabelled=unlabelled)
    with FeatureFile(train) as features:
        targets, target_notes = read_targets(features, tuple(label_columns), kinds)
    if len(targets) > 1 or (targets and targets[0].kind != CLASSES):
        if mitigate:
            raise FeaturizerError(
                "--mitigate refits a single classifier: it does not apply to several tasks, label sets or numbers"
            )
        if adapt or baseline or params is not None or semi:
            raise FeaturizerError(
                "--adapt, --baseline, --C, --no-cv and --unlabelled fit a single classifier: leave them out "
                f"for several tasks, label sets or numbers ({', '.join(f'{t.name}: {t.kind}' for t in targets)})"
            )
        options = {"normalise": normalise, "seed": seed, "n_jobs": n_jobs, "calibrate": calibrate}
        return fit_tasks(train, targets, head, layer, **options, notes=target_notes)
    label_column = label_columns[0] if label_columns else None
    if mitigate:
        training_groups(train, groups, label_column)  # groups that miss items: refused before the work
    maps = {}
    with FeatureFile(train) as features:
        spec = features.spec
        if semi:
            check_pool(train, unlabelled, spec)  # before the work
        if params is not None and choose_layers(features.layers, layer) == AUTO:
            raise FeaturizerError(
                "--layer auto chooses by cross-validation; it cannot be combined with fixed parameters"
            )
        table, best, notes = [], None, []
        candidates = candidate_layers(features, AUTO if layer is None and params is None else layer)
        screened = screen_candidates(features, candidates, seed, label_column) if len(candidates) > AUTO_FULL_CV else {}
        full = sorted(candidates, key=lambda c: -screened[c])[:AUTO_FULL_CV] if screened else candidates
        bar = tqdm(total=len(full), desc="fit", unit="candidate", disable=not progress, delay=1.0, leave=False)
        for layers in candidates:
            if layers not in full:  # screened out by LogME: listed, not cross-validated
                table.append(CVRow(layers, {}, float("nan"), float("nan"), screened[layers], tried=False))
                continue
            bar.set_postfix_str("+".join(layers))
            X, y, notes = labelled(*read_xy(features, layers, label_column), str(train))
            check_labels(y, str(train))
            views = labelled_views(features, layers, label_column)
            weights = None
            if adapt:
                adapted = maps[layers] = adaptation(adapt, target, spec.select(layers), X, y, head, normalise, seed)
                X, weights = adapted.source(X), adapted.weights
                views = None if views is None else np.stack([adapted.source(v) for v in views])
            if params is None:
                searched = cross_validate(X, y, head, normalise, seed, n_jobs, views, weights)
            else:
                tiled = None if weights is None or views is None else np.tile(weights, len(views) + 1)
                searched = fit_fixed(
                    *stack_views(X, y, views), head, normalise, params, weights if views is None else tiled
                )
            table.append(CVRow(layers, searched.params, searched.mean, searched.std, screened.get(layers)))
            if best is None or searched.mean > best[1].mean:  # NaN (no CV possible) never beats the first
                best = (searched, table[-1])
            bar.update()
        bar.close()
        sources = features.sources
        labels = features.labels if label_column is None else features.column(label_column)
        if sources is not None and labels is not None:
            sources = [s for s, label in zip(sources, labels) if label != ""]
    searched, row = best
    choice = with_pool(searched, train, unlabelled, spec.select(row.layers), label_column, semi, seed) if semi else None
    calibration = calibrate_head(searched) if calibrate and (choice is None or choice.method == "none") else {}
    adapted = maps.get(row.layers)
    mitigation = {}
    if mitigate:
        found = mitigated_head(train, searched.model, row.layers, label_column, mitigate, groups, seed)
        searched.model, mitigation = found
    model = end_to_end(spec.select(row.layers), searched.model, adapted.target_map if adapted else None)
    card = ModelCard(
        spec=spec.select(row.layers),
        classes=[str(c) for c in model.classes_],
        head=head,
        params={**row.params, "normalise": normalise or "default", **({"semi": choice.method} if choice else {})},
        cv=[
            {"layers": r.name, "params": r.params, "mean": r.mean, "std": r.std, "logme": r.logme, "tried": r.tried}
            for r in table
        ],
        cv_score=row.mean,
        train=str(os.path.abspath(train)),
        calibration=calibration,
        adaptation=adaptation_card(adapted, target) if adapted else {},
        label_column=label_column or "",
        label_counts={str(c): int(n) for c, n in zip(*np.unique(y, return_counts=True))},
        train_sha256=file_sha256(train),
        limits=small_class_warnings(y),
    )
    result = FitResult(model, card, table, warnings=target_notes + notes + small_class_warnings(y))
    if mitigation:
        card.mitigation = mitigation
        result.warnings.append(mitigation_note(mitigation))
    if adapted is not None and (adapted.asked == "auto" or adapted.weights is not None):
        result.warnings.append(adapted.summary())
    if choice is not None:
        scored = ", ".join(f"{m} {mean:.3f}" for m, (mean, _) in choice.scores.items())
        result.warnings.append(f"unlabelled pool: kept {choice.method} ({choice.reason}); labelled-fold CV {scored}")
    if baseline:
        result.baseline = fit_baseline(spec.modality, sources, y, head, seed)
        result.warnings += baseline_warnings(row, result.baseline)
        base = result.baseline
        card.baseline = {"layers": base.name, "params": base.params, "mean": base.mean, "std": base.std}
        card.limits += baseline_warnings(row, base)  # negative transfer, in the Markdown card's known limits
    return result


def adaptation_card(adapted: Adaptation, target) -> dict:
    """What the model card records of an adaptation: the method kept (and asked), the target file,
    whether the model holds a feature map, and each candidate's score when ``auto`` chose."""
    card = {
        "method": adapted.method,
        "target": str(os.path.abspath(target)),
        "feature_map": adapted.target_map is not None,
    }
    if adapted.asked != adapted.method:
        card["asked"] = adapted.asked
    if adapted.weights is not None:
        card["effective_size"] = round(effective_size(adapted.weights), 1)
    if adapted.scores:
        card["scores"] = {m: {"circular": mean, "se": se} for m, (mean, se) in adapted.scores.items()}
        card["reason"] = adapted.reason
    return card


def check_semi(semi: str | None, unlabelled, adapt: str | None) -> str | None:
    """The semi-supervised method to run (None: none), checked once against the other options."""
    if semi is not None and semi not in SEMI_METHODS:
        raise FeaturizerError(f"--semi must be one of {', '.join(SEMI_METHODS)}, not {semi!r}")
    if unlabelled is None:
        if semi not in (None, "none"):
            raise FeaturizerError("--semi uses an unlabelled pool: give it with --unlabelled POOL.h5")
        return None
    if adapt:
        raise FeaturizerError("--unlabelled and --adapt cannot be combined yet: choose one")
    return semi or "auto"


def check_pool(train, pool, spec: FeatureSpec) -> None:
    """Refuse, in one line, a pool that is the labelled file, holds no items, or was made otherwise
    (model, weights, preprocessing, pooling, precision) than ``spec``, on the layers both hold."""
    if same_location(train, pool):
        raise FeaturizerError(f"the unlabelled pool {pool} is the labelled file itself: give other items")
    with FeatureFile(pool) as p:
        shared = tuple(layer for layer in spec.layers if layer in p.spec.layers)
        check_compatible(spec.select(shared) if shared else spec, p.spec, str(pool), "the training features")
        if not len(p):
            raise FeaturizerError(f"the unlabelled pool {pool} holds no items")


def with_pool(searched, train, pool, spec: FeatureSpec, label_column, method: str, seed: int) -> SemiChoice:
    """Choose how to use the unlabelled ``pool`` for the head cross-validation kept, and refit it so.

    Refused in one line: the labelled file itself as the pool, a pool of another feature spec, an
    empty pool."""
    check_pool(train, pool, spec)
    with FeatureFile(pool) as p:
        X_pool, _ = read_xy(p, spec.layers)
    with FeatureFile(train) as f:
        X, y, _ = labelled(*read_xy(f, spec.layers, label_column), str(train))
    choice = choose_semi(X, np.asarray(y), X_pool, clone(searched.model), method, seed)
    if choice.method != "none":
        semi = semi_estimator(choice.method, clone(searched.model)).fit(*stack_pool(X, y, X_pool))
        searched.model = semi.estimator_
    return choice


def fit_file(
    train: str | os.PathLike,
    head: str = "logreg",
    layer=None,
    *,
    output: str | os.PathLike | None = None,
    force: bool = False,
    zero_shot: str | os.PathLike | None = None,
    templates=DEFAULT_TEMPLATES,
    memory: int = MEMORY_PER_CLASS,
    **options,
) -> FitResult:
    """``xfer fit``: ``fit`` (or, with ``zero_shot`` a file of class names, ``fit_zero_shot``), then
    the model and its card saved at ``output`` (default: beside ``train``, named by the head).

    Both outputs go through the output guard before any work: never an input, nor a file xfer did
    not write; a model fitted on another file is replaced only with ``force``.
    """
    given = (train, options.get("target"), options.get("unlabelled"), options.get("groups"), zero_shot)
    with guarding(*(p for p in given if p is not None)):
        return _fit_file(train, head, layer, output, force, zero_shot, templates, memory, options)


def _fit_file(train, head, layer, output, force, zero_shot, templates, memory, options) -> FitResult:
    named = default_outputs("fit", train, "zero-shot" if zero_shot else head)
    output = location(output or named["output"])
    claim(output, what="model", kind="model")
    claim(output.with_suffix(".json"), what="the model's card", kind="card")
    claim(output.with_suffix(".md"), what="the model's Markdown card", kind="card-md")
    if zero_shot:
        fixed = ("adapt", "baseline", "label_columns", "unlabelled", "mitigate")
        if any(options.get(k) for k in fixed) or options.get("params") is not None:
            raise FeaturizerError(
                "--zero-shot fits its own head: leave out --adapt, --baseline, --C, --no-cv, --label-column, "
                "--unlabelled and --mitigate"
            )
        result = fit_zero_shot(train, zero_shot, templates or DEFAULT_TEMPLATES, layer, seed=options.get("seed", 0))
    else:
        result = fit(train, head, layer, **options)
    if remembers(result.card) and not is_url(output):  # the rehearsal memory for xfer update
        result.card.memory = training_memory(output, train, result.card, memory, options.get("seed", 0))
    save_model(result.model, result.card, output, force=force)
    result.output = output
    return result
