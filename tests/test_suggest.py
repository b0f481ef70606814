"""Active learning: uncertainty scores, k-center coverage, and the suggestion CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pipelines import fit, save_model
from pipelines.evaluate._suggest import choose, entropy_uncertainty, kcenter_greedy, margin_uncertainty
from tests.test_flows import xfer


def test_uncertainty_is_highest_where_the_classes_tie():
    proba = np.array([[0.98, 0.01, 0.01], [0.5, 0.49, 0.01], [0.34, 0.33, 0.33]])
    assert np.argsort(-margin_uncertainty(proba)).tolist()[0] in (1, 2)
    assert margin_uncertainty(proba)[0] < 0.05 and entropy_uncertainty(proba).argmax() == 2


def test_kcenter_picks_the_far_away_point_first():
    rng = np.random.default_rng(0)
    cluster = rng.normal(size=(50, 3)) * 0.05 + [1, 0, 0]
    far = np.array([[0, 0, 1.0]])
    X = np.vstack([cluster, far])
    assert kcenter_greedy(X, 1) == [50]
    # with labelled items near the far point, the next pick comes from elsewhere
    second = kcenter_greedy(X, 2, labelled=np.array([[0, 0.05, 1.0]]))
    assert 50 not in second[:1]


def test_kcenter_covers_clusters_before_repeating_one():
    rng = np.random.default_rng(1)
    centres = np.eye(4) * 5
    X = np.vstack([c + rng.normal(size=(30, 4)) * 0.1 for c in centres])
    picked = kcenter_greedy(X, 4)
    assert sorted(i // 30 for i in picked) == [0, 1, 2, 3]


def test_hybrid_spreads_its_uncertain_picks():
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(size=(20, 5)) * 0.01 + 1, rng.normal(size=(20, 5)) * 0.01 - 1])
    gap = np.r_[[0.0, 0.0], np.full(18, 0.4), np.full(20, 0.02)]  # two near-twins hesitate most
    proba = np.c_[0.5 + gap / 2, 0.5 - gap / 2]
    margin_pick, _ = choose("margin", 2, X, proba)
    assert sorted(margin_pick) == [0, 1]  # the twins
    picked, _ = choose("hybrid", 2, X, proba)
    assert {i // 20 for i in picked} == {0, 1}  # one from each cluster instead


def test_unknown_strategy_is_refused():
    from featurizer import FeaturizerError

    with pytest.raises(FeaturizerError, match="strategy must be one of"):
        choose("greedy", 2, np.zeros((3, 2)), None)


def test_suggest_cli_writes_a_csv_to_label(digit_features, digits_dir, tmp_path):
    train, _, cache = digit_features
    result = fit(train, "logreg", "pre_logits")
    model = save_model(result.model, result.card, tmp_path / "m.skops")
    pool = tmp_path / "pool"  # unlabelled: no class folders
    pool.mkdir()
    for path in sorted((digits_dir / "test").rglob("*.png")):
        (pool / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())
    out = tmp_path / "s.csv"
    printed = xfer("suggest", model, pool, "-n", "5", "-o", out, "--cache-dir", cache).output
    refused = xfer("suggest", model, digits_dir / "test", "-o", tmp_path / "t.csv", "--cache-dir", cache, ok=False)
    assert refused.exit_code == 1 and "no unlabelled items" in refused.output
    assert "5 suggestions (hybrid)" in printed
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"] and len({r["id"] for r in rows}) == 5
    assert all(r["source"].endswith(".png") and r["predicted"] in result.card.classes for r in rows)


def test_labels_come_back_with_featurize_labels(digits_dir, tmp_path):
    """The loop: a CSV of id,label (suggest's, once labelled) gives labels to those items of the input."""
    from featurizer import FeatureFile, ReadOptions, read_inputs

    unlabelled = tmp_path / "pool"
    for path in sorted((digits_dir / "test").rglob("*.png"))[:6]:
        (unlabelled / path.name).parent.mkdir(parents=True, exist_ok=True)
        (unlabelled / path.name).write_bytes(path.read_bytes())
    ids = read_inputs(unlabelled).ids
    labels = tmp_path / "labelled.csv"
    labels.write_text(
        "rank,id,label\n" + "".join(f"{i},{item},{item.split('_')[0]}\n" for i, item in enumerate(ids[:3]))
    )
    inputs = read_inputs(unlabelled, options=ReadOptions(labels=str(labels)))
    assert inputs.labels == [i.split("_")[0] for i in ids[:3]] + ["", "", ""]
    out = xfer("featurize", unlabelled, "--labels", labels, "-o", tmp_path / "f.h5", "-q").output
    assert "3 labels read from labelled.csv" in out and "3 items have no label" in out
    with FeatureFile(tmp_path / "f.h5") as f:
        assert f.labels[:3] == inputs.labels[:3]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,label\nnot-an-item.png,3\n")
    refused = xfer("featurize", unlabelled, "--labels", wrong, "-o", tmp_path / "g.h5", ok=False)
    assert refused.exit_code == 1 and "none of its ids is an item" in refused.output


QUESTIONS = {
    "who": ["Who wrote Hamlet?", "Who painted the ceiling?", "Who founded the city?", "Who won the race?"],
    "where": ["Where is Rome?", "Where is the museum?", "Where do penguins live?", "Where is the bridge?"],
    "when": ["When did the war end?", "When was the tower built?", "When is the festival?", "When did it rain?"],
}


def test_the_loop_never_suggests_what_training_already_labelled(tmp_path):
    """featurize the pool with some labels (--labels), fit, suggest on the same pool: only unlabelled items."""
    texts = [q for qs in QUESTIONS.values() for q in qs]
    pool = tmp_path / "pool.csv"
    with open(pool, "w", newline="") as f:
        csv.writer(f).writerows([("text",), *((t,) for t in texts)])
    labels = tmp_path / "labels.csv"
    chosen = [i for i in range(len(texts)) if i % 4 < 2]  # two of each class
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([("id", "label"), *((str(i), texts[i].split()[0].lower()) for i in chosen)])
    cache = tmp_path / "cache"
    xfer(
        "featurize", pool, "-m", "minilm", "-l", "-1", "--labels", labels, "-o", tmp_path / "q.h5", "--cache-dir", cache
    )
    xfer("fit", tmp_path / "q.h5", "--head", "prototype", "-o", tmp_path / "m.skops")
    for strategy in ("hybrid", "kcenter", "margin"):
        out = tmp_path / f"{strategy}.csv"
        xfer("suggest", tmp_path / "m.skops", pool, "-n", "6", "--strategy", strategy, "-o", out, "--cache-dir", cache)
        with open(out) as f:
            suggested = [int(row["id"]) for row in csv.DictReader(f)]
        assert len(suggested) == 6 and not set(suggested) & set(chosen), strategy
