"""xfer audit: planted duplicates, leaks, a wrong label and an outlier are found; bad inputs get one line."""

from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from featurizer import FeaturizerError, featurize
from pipelines.audit._audit import audit, audit_files, duplicate_clusters, text_key
from tests.test_flows import xfer
from tests.test_tasks import news_rows, write_table

OFF_TOPIC = "Quantum chromodynamics describes quarks and gluons bound by the strong interaction on a lattice."


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """Train: 60 sports/politics texts, one labelled wrong, one off-topic, two copies of one text.
    Test: 12 texts, two of them training texts (one lower-cased, without its question mark)."""
    root = tmp_path_factory.mktemp("audit")
    train = [{"id": r["id"], "text": r["text"], "label": r["topic"]} for r in news_rows(60, 0)]
    train[4]["label"] = "politics" if train[4]["label"] != "politics" else "sports"  # a wrong label
    train.append({"id": "far", "text": OFF_TOPIC, "label": "sports"})
    train.append({"id": "copy", "text": train[10]["text"] + "  ", "label": train[10]["label"]})
    test = [{"id": r["id"], "text": r["text"], "label": r["topic"]} for r in news_rows(12, 1)]
    test.append({"id": "leak1", "text": train[20]["text"], "label": train[20]["label"]})
    test.append({"id": "leak2", "text": train[30]["text"].lower().rstrip("."), "label": train[30]["label"]})
    for name, rows in (("train", train), ("test", test)):
        write_table(root / f"{name}.csv", rows)
        featurize(root / f"{name}.csv", "minilm", output=root / f"{name}.h5", cache_dir=root / "c", progress=False)
    return root, train


def test_audit_finds_the_planted_wrong_label_leaks_copies_and_outlier(texts, tmp_path):
    root, train = texts
    found, written = audit_files(root / "train.h5", root / "test.h5", out=tmp_path / "out")
    ids = found.ids
    suspects = [ids[e["row"]] for e in found.label_issues]
    assert train[4]["id"] in suspects
    leaked = {found.test["ids"][t["test_row"]] for t in found.leaks}
    assert {"leak1", "leak2"} <= leaked
    clusters = {}
    for d in found.duplicates:
        clusters.setdefault(d["cluster"], set()).add(ids[d["row"]])
    assert any({train[10]["id"], "copy"} <= members for members in clusters.values())
    assert ids[found.outliers[0]["row"]] == "far" and found.outliers[0]["flagged"]
    assert {p.name for p in written} == {
        "duplicates.csv",
        "leaks.csv",
        "outliers.csv",
        "label_issues.csv",
        "classes.csv",
    }
    with open(tmp_path / "out" / "leaks.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"test_id", "test_source", "train_id", "train_source", "similarity"} <= set(rows[0])
    assert any(r["test_source"] == train[20]["text"] for r in rows)  # the text itself, not a line number


def test_audit_without_labels_still_finds_duplicates_and_outliers_and_says_what_it_skipped(texts, tmp_path):
    root, _ = texts
    with open(root / "train.csv") as f:
        rows = [{"text": r["text"]} for r in csv.DictReader(f)]
    write_table(tmp_path / "unlabelled.csv", rows)
    featurize(tmp_path / "unlabelled.csv", "minilm", output=tmp_path / "u.h5", cache_dir=root / "c", progress=False)
    out = xfer("audit", tmp_path / "u.h5", "-o", tmp_path / "csv").output
    assert "likely label errors            not searched" in out and "label issues were not searched" in out
    assert (tmp_path / "csv" / "duplicates.csv").is_file() and not (tmp_path / "csv" / "label_issues.csv").exists()


def test_bad_audit_inputs_get_one_line(texts, digit_features, tmp_path):
    root, _ = texts
    result = xfer("audit", root / "train.h5", digit_features[1], ok=False)
    assert result.exit_code != 0 and "does not match" in result.output and "Traceback" not in result.output
    result = xfer("audit", root / "train.h5", "--report", tmp_path / "missing" / "a.html", ok=False)
    assert "does not exist" in result.output and not (root / "train-audit").exists()  # refused before the work
    with pytest.raises(FeaturizerError, match="auto"):
        audit(root / "train.h5", layer="auto")


def test_a_re_encoded_photo_copied_into_the_test_set_is_found(photo_dir, tmp_path):
    test = tmp_path / "test"
    (test / "china").mkdir(parents=True)
    original = sorted((photo_dir / "china").glob("*.jpg"))[0]
    buffer = io.BytesIO()
    Image.open(original).convert("RGB").save(buffer, format="JPEG", quality=70)
    (test / "china" / "copy.jpg").write_bytes(buffer.getvalue())
    shutil.copy(sorted((photo_dir / "flower").glob("*.jpg"))[0], test / "china" / "exact.jpg")
    for split, folder in (("train", photo_dir), ("test", test)):
        featurize(folder, output=tmp_path / f"{split}.h5", cache_dir=tmp_path / "c", progress=False)
    found = audit(tmp_path / "train.h5", tmp_path / "test.h5")
    leaked = {found.test["ids"][t["test_row"]]: found.ids[t["train_row"]] for t in found.leaks}
    assert leaked.get("china/copy.jpg") == f"china/{original.name}"
    assert leaked.get("china/exact.jpg", "").startswith("flower/")  # a copy under another label: still a leak


def test_the_threshold_read_from_the_data_does_not_call_every_digit_a_duplicate(digit_features):
    found = audit(digit_features[0], digit_features[1])
    assert found.threshold > 0.95  # digits sit close to their neighbours: 0.95 would flag them all
    assert len(found.leaks) < 0.1 * len(found.test["ids"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=30), st.floats(0.5, 0.99))
def test_every_member_of_a_cluster_is_a_near_duplicate_of_its_reference(points, threshold):
    angles = np.asarray(points, dtype=float) * 0.2  # items on a circle: neighbours chain, far ends do not match
    X = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    found = duplicate_clusters(X, threshold)
    reference = {}
    for d in found:
        reference.setdefault(d["cluster"], d["row"])
        assert float(X[d["row"]] @ X[reference[d["cluster"]]]) >= threshold - 1e-5
    assert len({d["row"] for d in found}) == len(found)  # an item is in one cluster at most


def test_texts_edited_in_case_spacing_or_punctuation_have_one_key():
    assert text_key("What is the capital of France ?") == text_key("what is the capital of  france")
    assert text_key("a b") != text_key("a c") and text_key("?!") == ""
