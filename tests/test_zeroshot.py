"""Zero-shot from class names: the right class for texts that name it, the text as a prior, bad label files."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from featurizer import FeaturizerError, featurize
from pipelines import load_model, save_model
from pipelines.fit._zeroshot import fit_zero_shot, read_class_texts
from tests.test_flows import xfer

CLASSES = """\
sports: a text about sports, games, teams and athletes
cooking: a recipe, or a text about food and cooking
weather: a weather forecast: rain, sun, wind and temperatures
"""
TEXTS = [
    ("The striker scored twice and the team won the championship final.", "sports"),
    ("Whisk the eggs with sugar, then bake the cake for forty minutes.", "cooking"),
    ("Heavy rain and strong winds are expected tomorrow, with cooler temperatures.", "weather"),
    ("The tennis player lost the match in five sets.", "sports"),
    ("Add garlic and onions to the pan and simmer the tomato sauce.", "cooking"),
    ("Sunny skies this weekend, highs around twenty-five degrees.", "weather"),
]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("zeroshot")
    (root / "classes.txt").write_text(CLASSES)
    for name, labelled in (("unlabelled", False), ("labelled", True)):
        with open(root / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"] if labelled else ["text"])
            writer.writerows([(t, label) if labelled else (t,) for t, label in TEXTS])
        featurize(
            root / f"{name}.csv", "minilm", "-1", output=root / f"{name}.h5", cache_dir=root / "c", progress=False
        )
    return root


def test_zero_shot_picks_the_class_that_texts_name_without_any_label(texts):
    result = fit_zero_shot(texts / "unlabelled.h5", texts / "classes.txt")
    from featurizer import FeatureFile

    with FeatureFile(texts / "unlabelled.h5") as f:
        X = f.read()
    head = result.model.named_steps["head"]
    assert list(head.predict(X)) == [label for _, label in TEXTS]
    assert result.card.head == "zero-shot" and result.card.params["weight"] == "text only"


def test_with_labels_the_text_is_a_prior_chosen_by_cv_and_the_model_loads_safely(texts, tmp_path):
    result = fit_zero_shot(texts / "labelled.h5", texts / "classes.txt", templates=("{}", "This text is {}."))
    assert result.card.params["weight"] in (16.0, 8.0, 4.0, 2.0, 1.0, 0.0)
    path = save_model(result.model, result.card, tmp_path / "z.skops")
    _, card = load_model(path)  # ZeroShotPrototypes is a trusted type: no --trust needed
    assert card.params["descriptions"]["sports"].startswith("a text about sports")
    out = xfer("predict", path, texts / "unlabelled.csv", "-o", tmp_path / "p.csv", "--cache-dir", texts / "c")
    assert "6 predictions" in out.output
    with open(tmp_path / "p.csv") as f:
        assert [row["label"] for row in csv.DictReader(f)] == [label for _, label in TEXTS]


def test_zero_shot_from_the_cli(texts, tmp_path):
    out = xfer("fit", texts / "unlabelled.h5", "--zero-shot", texts / "classes.txt", "-o", tmp_path / "z.skops")
    assert "wrote" in out.output and (tmp_path / "z.skops").exists()
    refused = xfer("fit", texts / "unlabelled.h5", "--zero-shot", texts / "classes.txt", "--C", "1", ok=False)
    assert refused.exit_code != 0 and "--zero-shot fits its own head" in refused.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "lists no classes"),
        ("\n# only a comment\n", "lists no classes"),
        ("sports: games\ncooking:\n", "class 'cooking' has no description"),
        ("sports\nsports: games\n", "listed twice"),
        (": games\n", "no class name"),
    ],
)
def test_bad_class_files_get_one_line(tmp_path, content, message):
    path = tmp_path / "classes.txt"
    path.write_text(content)
    with pytest.raises(FeaturizerError, match=message):
        read_class_texts(path)


def test_a_name_alone_is_its_own_description(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("sports\ncooking: food and recipes\n")
    assert read_class_texts(path) == (["sports", "cooking"], ["sports", "food and recipes"])


def test_zero_shot_refuses_image_features_of_a_model_without_a_text_tower(digit_features):
    with pytest.raises(FeaturizerError, match="needs an image-text model"):
        fit_zero_shot(digit_features[0], _classes_file(digit_features[0].parent))


def _classes_file(folder):
    path = folder / "digit_classes.txt"
    path.write_text("".join(f"{d}: the digit {d}\n" for d in range(10)))
    return path


def test_prototypes_move_toward_examples_as_they_accumulate():
    from pipelines.fit._zeroshot import ZeroShotPrototypes

    text = np.array([[1.0, 0.0], [0.0, 1.0]])
    X = np.array([[0.6, 0.8]] * 4)  # four examples of class a, off its text direction
    prior = ZeroShotPrototypes(text, ["a", "b"], weight=16.0).fit(X, ["a"] * 4).prototypes_[0]
    weak = ZeroShotPrototypes(text, ["a", "b"], weight=1.0).fit(X, ["a"] * 4).prototypes_[0]
    assert prior[0] > weak[0]  # a strong prior stays near the text; a weak one follows the examples
    assert np.allclose(ZeroShotPrototypes(text, ["a", "b"], weight=0.0).fit(X, ["a"] * 4).prototypes_[0], [0.6, 0.8])
