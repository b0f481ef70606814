"""Shared test data: real photos and digit scans that ship with scikit-learn, written as files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from pipelines.demo_data import write_digits


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """ImageFolder of two classes of real photos: crops of 'china' (a palace) and 'flower' (a daisy)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("china", "flower"):
        image = load_sample_image(f"{name}.jpg")
        (root / name).mkdir()
        for i in range(6):
            h, w = image.shape[:2]
            ch, cw = rng.integers(h // 2, h), rng.integers(w // 2, w)
            top, left = rng.integers(0, h - ch), rng.integers(0, w - cw)
            crop = image[top : top + ch, left : left + cw]
            Image.fromarray(crop[:, ::-1] if i % 2 else crop).save(root / name / f"{name}_{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """Digits as 32x32 PNGs in ``train/<digit>`` and ``test/<digit>``, 12 per class."""
    return write_digits(tmp_path_factory.mktemp("digits"), per_class=12)


@pytest.fixture(scope="session")
def onnx_graphs(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-graphs")


@pytest.fixture(scope="session")
def static_tables(tmp_path_factory):
    return tmp_path_factory.mktemp("static-tables")


@pytest.fixture(autouse=True)
def default_cache(tmp_path, monkeypatch, onnx_graphs, static_tables):
    """Code that uses the default cache writes under the test's folder, never into the checkout.

    Exported ONNX graphs (the default runtime on a CPU) and distilled static tables are shared by the
    whole session: each test has its own cache folder, and making either takes seconds.
    """
    monkeypatch.setenv("FEATURIZER_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setenv("FEATURIZER_ONNX_DIR", str(onnx_graphs))
    monkeypatch.setenv("FEATURIZER_STATIC_DIR", str(static_tables))


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def questions():
    return [
        "How did serfdom develop in and then leave Russia ?",
        "What films featured the character Popeye Doyle ?",
        "Who was the first president of the United States ?",
        "What is the capital of France ?",
        "When did the Berlin wall fall ?",
        "How many moons does Mars have ?",
        "Why is the sky blue ?",
        "Where is the Eiffel tower ?",
        "a",
        "This is a much longer sentence that goes on and on about nothing in particular, "
        "so that the batch holds texts of very different lengths and padding matters a lot.",
    ]


@pytest.fixture(scope="session")
def digit_features(tmp_path_factory, digits_dir):
    """Feature files of the digit images (pre-logits and blocks.6), train and test, from the real model."""
    from featurizer import featurize

    root = tmp_path_factory.mktemp("digit_features")
    cache = root / "cache"
    paths = {}
    for split in ("train", "test"):
        paths[split] = root / f"{split}.h5"
        featurize(
            digits_dir / split, "efficientnet_lite0", ["-1", "-3"], output=paths[split], cache_dir=cache, progress=False
        )
    return paths["train"], paths["test"], cache


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on a free local port: the real S3 API over HTTP, for s3fs."""
    server_module = pytest.importorskip("moto.server", reason="moto is not installed (pip install -e '.[dev]')")
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[cloud]')")
    import logging
    import socket

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A new, empty bucket on the local S3 server, as ``s3://BUCKET``; credentials in the environment."""
    import uuid

    import s3fs

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    yield f"s3://{bucket}"
    s3fs.S3FileSystem.clear_instance_cache()
