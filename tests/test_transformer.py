"""The Featurizer as a scikit-learn transformer: estimator contract, pipelines, grid search, pickling."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import load_sample_image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks as checks

from featurizer import Featurizer, ItemError
from featurizer.backbones import TimmBackbone

ROOT = Path(__file__).resolve().parents[1]

# scikit-learn's data checks feed numeric 2-D arrays; a Featurizer takes image paths, images or
# texts, so its tags (two_d_array=False, string=True) leave only the cloneability check to
# check_estimator. These API checks do not need numeric data and are run by hand:
API_CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_repr,
    checks.check_no_attributes_set_in_init,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_parameters_default_constructible,
]


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_estimator_api_checks(check):
    check("Featurizer", Featurizer())


def test_init_stores_parameters_only_and_loads_nothing(monkeypatch):
    import featurizer.engine._extract as extract

    monkeypatch.setattr(extract, "load_backbone", lambda *a: pytest.fail("model loaded"))
    f = Featurizer("efficientnet_lite0", layers=[-1, "blocks.4"], pooling="gem", cache=False)
    assert f.get_params()["layers"] == [-1, "blocks.4"]
    f.fit()  # built-in models resolve layers from the registry, without loading the network
    assert f.layers_ == ("pre_logits", "blocks.4") and f.n_features_out_ == 1280 + 112
    names = f.get_feature_names_out()
    assert names[0] == "pre_logits_0" and names[-1] == "blocks.4_111" and len(names) == f.n_features_out_


def test_transform_accepts_paths_pil_images_and_arrays(photo_dir, tmp_path):
    f = Featurizer(cache=tmp_path / "c").fit()
    path = sorted(photo_dir.rglob("*.jpg"))[0]
    pil = Image.open(path).convert("RGB")
    array = np.asarray(pil)
    out = f.transform([path, str(path), pil, array])
    assert out.shape == (4, 1280) and out.dtype == np.float32
    np.testing.assert_allclose(out[1:], np.repeat(out[:1], 3, axis=0), rtol=1e-4, atol=1e-5)
    frame = clone(f).set_output(transform="pandas").fit().transform([array])
    assert list(frame.columns[:2]) == ["pre_logits_0", "pre_logits_1"] and frame.shape == (1, 1280)
    with pytest.raises(ItemError, match="cannot featurize item 0"):
        f.transform([tmp_path / "missing.jpg"])


def test_text_layers_are_concatenated_in_the_order_given(questions, tmp_path):
    both = Featurizer("minilm", layers=[-1, 0], cache=tmp_path).fit().transform(questions)
    last = Featurizer("minilm", layers=-1, cache=tmp_path).fit().transform(questions)
    first = Featurizer("minilm", layers="embeddings", cache=tmp_path).fit().transform(questions)
    np.testing.assert_array_equal(both, np.hstack([last, first]))


def test_grid_search_computes_each_layer_setting_once(photo_dir, tmp_path, monkeypatch):
    forwarded = {}
    original = TimmBackbone.forward

    def counting(self, x, layers):
        forwarded[tuple(layers)] = forwarded.get(tuple(layers), 0) + len(x)
        return original(self, x, layers)

    monkeypatch.setattr(TimmBackbone, "forward", counting)
    paths = sorted(str(p) for p in photo_dir.rglob("*.jpg"))
    y = [Path(p).parent.name for p in paths]
    featurizer = Featurizer("efficientnet_lite0", cache=tmp_path, runtime="torch")
    pipe = Pipeline([("f", featurizer), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"f__layers": [[-1], [-3], [-1, -3]], "clf__C": [0.1, 1.0]}, cv=3).fit(paths, y)
    assert search.best_score_ > 0.8
    # 3 folds x 2 values of C x (fit + score) transforms per layer setting, yet every photo went
    # through the network once per distinct layer setting; the later settings come from the cache.
    assert forwarded == {("pre_logits",): 12, ("blocks.6",): 12}


def test_pickle_keeps_parameters_not_weights(tmp_path):
    f = Featurizer(cache=tmp_path).fit()
    f.transform([load_sample_image("china.jpg")])  # loads the network
    blob = pickle.dumps(f)
    assert len(blob) < 10_000
    restored = pickle.loads(blob)
    assert restored.get_params() == f.get_params()


def test_saved_pipeline_predicts_identically_in_another_process(photo_dir, tmp_path):
    paths = sorted(str(p) for p in photo_dir.rglob("*.jpg"))
    y = [Path(p).parent.name for p in paths]
    pipe = Pipeline([("f", Featurizer(cache=tmp_path / "c")), ("clf", LogisticRegression())]).fit(paths, y)
    joblib.dump(pipe, tmp_path / "m.joblib")
    expected = pipe.predict_proba(paths)
    np.save(tmp_path / "expected.npy", expected)
    code = (
        "import joblib, numpy as np, sys; m = joblib.load(sys.argv[1]); "
        "print(np.abs(m.predict_proba(sys.argv[3:]) - np.load(sys.argv[2])).max(), *m.predict(sys.argv[3:4]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, tmp_path / "m.joblib", tmp_path / "expected.npy", *paths],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    assert float(out[0]) < 1e-6 and out[1] == "china"


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for name in ("china", "flower"):
        for i in range(4):
            folder = tmp_path / "photos" / name
            folder.mkdir(parents=True, exist_ok=True)
            image = load_sample_image(f"{name}.jpg")[i * 40 :, i * 50 :]
            Image.fromarray(image).save(folder / f"{i}.jpg")
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
