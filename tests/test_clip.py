"""Image-text models: a tiny CLIP with random weights, built from a config, checks the plumbing offline.

Random weights say nothing about accuracy (that needs downloaded CLIP weights); they do check
that images and texts go through the right towers, into one space, exactly as transformers does.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from featurizer import FeatureFile, featurize
from tests.test_flows import xfer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def write_tiny_clip(folder):
    """A CLIP model of 2 layers a tower, 32 wide, 16-d shared space, 32 px images, with a byte-level
    tokenizer (no merges): saved as a Hugging Face folder, like a downloaded one."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    transformers.CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    end = vocab["<|endoftext|>"]
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = transformers.CLIPConfig(
        text_config={**tower, "vocab_size": len(vocab), "eos_token_id": end, "pad_token_id": end},
        vision_config={**tower, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    size = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    transformers.CLIPImageProcessor(**size).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The tiny CLIP folder, 32 px photos in two class folders, and a CSV of texts."""
    root = tmp_path_factory.mktemp("clip")
    write_tiny_clip(root / "tiny-clip")
    for name, label in (("china", "palace"), ("flower", "flower")):
        (root / "photos" / label).mkdir(parents=True)
        image = Image.fromarray(load_sample_image(f"{name}.jpg"))
        for i, box in enumerate([(0, 0, 400, 400), (100, 20, 500, 420)]):
            image.crop(box).resize((32, 32)).save(root / "photos" / label / f"{i}.png")
    with open(root / "texts.csv", "w", newline="") as f:
        csv.writer(f).writerows([["text"], ["a photo of a palace"], ["a photo of a flower"], ["x"]])
    return root


def model_name(clip) -> str:
    return f"hf/{clip / 'tiny-clip'}"


def test_images_and_texts_go_through_their_towers_into_one_space_exactly_as_transformers(clip):
    images = featurize(clip / "photos", model_name(clip), output=clip / "img.h5", cache_dir=clip / "c", progress=False)
    texts = featurize(
        clip / "texts.csv", model_name(clip), output=clip / "txt.h5", cache_dir=clip / "c", progress=False
    )
    with FeatureFile(images.output) as fi, FeatureFile(texts.output) as ft:
        assert fi.spec.modality == "image" and ft.spec.modality == "text" and fi.spec.model == ft.spec.model
        assert fi.layers[0] == ft.layers[0] == "embeds"  # the default layer: the shared space
        assert fi.spec.runtime == "torch"  # no ONNX export of CLIP towers yet
        image_vectors, text_vectors = fi.read("embeds"), ft.read("embeds")
        image_paths, text_sources = fi.sources, ft.sources
    assert image_vectors.shape[1] == text_vectors.shape[1] == 16
    model = transformers.CLIPModel.from_pretrained(clip / "tiny-clip").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(clip / "tiny-clip")
    processor = transformers.CLIPImageProcessor.from_pretrained(clip / "tiny-clip")
    with torch.no_grad():
        expected_text = model.get_text_features(**tokenizer(text_sources, padding=True, return_tensors="pt"))
        pixels = processor([Image.open(p).convert("RGB") for p in image_paths], return_tensors="pt")
        expected_image = model.get_image_features(**pixels)
    as_array = [getattr(t, "pooler_output", t).numpy() for t in (expected_text, expected_image)]
    np.testing.assert_allclose(text_vectors, as_array[0], atol=1e-5)
    np.testing.assert_allclose(image_vectors, as_array[1], atol=1e-4)


def test_zero_shot_on_images_embeds_the_class_texts_with_the_text_tower(clip, tmp_path):
    from pipelines import load_model
    from pipelines.fit._zeroshot import class_text_vectors

    featurize(clip / "photos", model_name(clip), "embeds", output=tmp_path / "img.h5", progress=False)
    (tmp_path / "classes.txt").write_text("palace: a palace\nflower: a flower\n")
    model = tmp_path / "zero.skops"
    xfer(
        "fit", tmp_path / "img.h5", "--zero-shot", tmp_path / "classes.txt", "--template", "a photo of {}.", "-o", model
    )
    xfer("predict", model, clip / "photos", "-o", tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as f:
        assert {row["label"] for row in csv.DictReader(f)} <= {"palace", "flower"}
    pipeline, card = load_model(model)
    head = pipeline.named_steps["head"]
    expected = class_text_vectors(card.spec, ["a palace", "a flower"], ("a photo of {}.",))
    np.testing.assert_allclose(head.class_vectors, expected, atol=1e-6)
    with FeatureFile(tmp_path / "img.h5") as f:
        assert json.loads(card.spec.to_json())["modality"] == "image" and f.spec.layers == ("embeds",)


def test_zero_shot_on_images_refuses_models_and_layers_without_a_shared_space(clip, digit_features, tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    result = xfer("fit", digit_features[0], "--zero-shot", tmp_path / "classes.txt", ok=False)
    assert result.exit_code != 0 and "image-text model (CLIP" in result.output
    featurize(clip / "photos", model_name(clip), "pooled", output=tmp_path / "pooled.h5", progress=False)
    result = xfer("fit", tmp_path / "pooled.h5", "--zero-shot", tmp_path / "classes.txt", ok=False)
    assert "--layer embeds" in result.output and "Traceback" not in result.output


def test_layers_of_a_clip_model_name_the_shared_space(clip):
    out = xfer("layers", model_name(clip)).output
    assert "embeds" in out and "(default)" in out.splitlines()[-1] and "pooled" in out


def test_a_hub_clip_model_offline_fails_in_one_line(clip, tmp_path):
    result = xfer(
        "featurize", clip / "photos", "-m", "hf/openai/clip-vit-base-patch32", "-o", tmp_path / "h.h5", ok=False
    )
    assert result.exit_code != 0 and "openai/clip-vit-base-patch32" in result.output
    assert "Traceback" not in result.output


# --- open_clip ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """A tiny open_clip architecture registered with the package, and a checkpoint of random weights."""
    open_clip = pytest.importorskip(
        "open_clip", reason="open_clip_torch is not installed (pip install 'featurizer[clip]')"
    )
    root = tmp_path_factory.mktemp("open_clip")
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    (root / "tiny-open-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(root)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-open-clip", pretrained=None)
    torch.save(model.state_dict(), root / "tiny.pt")
    return open_clip, model.eval(), root / "tiny.pt"


def test_open_clip_towers_match_the_package_and_share_one_space(tiny_open_clip, clip, tmp_path):
    open_clip, model, checkpoint = tiny_open_clip
    name = "open_clip/tiny-open-clip"
    run = {"weights": checkpoint, "cache_dir": tmp_path / "c", "progress": False}
    images = featurize(clip / "photos", name, output=tmp_path / "img.h5", **run)
    texts = featurize(clip / "texts.csv", name, output=tmp_path / "txt.h5", **run)
    with FeatureFile(images.output) as fi, FeatureFile(texts.output) as ft:
        image_vectors, paths = fi.read("embeds"), fi.sources
        text_vectors, sources = ft.read("embeds"), ft.sources
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-open-clip", pretrained=None)
    with torch.no_grad():
        expected_image = model.encode_image(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths]))
        expected_text = model.encode_text(open_clip.get_tokenizer("tiny-open-clip")(sources))
    np.testing.assert_allclose(image_vectors, expected_image.numpy(), atol=1e-4)
    np.testing.assert_allclose(text_vectors, expected_text.numpy(), atol=1e-4)
    (tmp_path / "classes.txt").write_text("palace: a palace\nflower: a flower\n")
    xfer("fit", images.output, "--zero-shot", tmp_path / "classes.txt", "-o", tmp_path / "z.skops")


def test_an_open_clip_name_without_weights_says_how_to_name_them(tiny_open_clip, clip, tmp_path):
    result = xfer("featurize", clip / "photos", "-m", "open_clip/tiny-open-clip", "-o", tmp_path / "x.h5", ok=False)
    assert "open_clip/tiny-open-clip/TAG" in result.output and "Traceback" not in result.output


def test_a_local_model_folder_is_an_input_of_the_command_that_loads_it(clip, tmp_path):
    """No output of featurize may land in, or replace, the model folder it reads its weights from."""
    import hashlib

    folder = tmp_path / "my-clip"
    shutil.copytree(clip / "tiny-clip", folder)

    def digest():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    before = digest()
    for out in (folder / "out.h5", folder / "model.safetensors"):
        result = xfer("featurize", clip / "photos", "-m", f"hf/{folder}", "--force", "-o", out, ok=False)
        assert result.exit_code == 1 and "input" in result.output, result.output
    assert digest() == before
