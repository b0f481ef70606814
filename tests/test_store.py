"""The embedding cache keeps every finished batch and survives damage it did not cause."""

from __future__ import annotations

import hashlib

import numpy as np

from featurizer.cache._store import EmbeddingStore
from featurizer.spec._spec import FeatureSpec


def spec(layer="pre_logits", weights="w", sha=None, model="m"):
    return FeatureSpec(model, "image", weights, sha, {"size": 1}, "fp32", (layer,), ("avg",))


def open_store(root, layer="pre_logits"):
    return EmbeddingStore(root, spec(layer), layer)


def key(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


def test_round_trip_in_any_order_including_keys_ending_in_nul(tmp_path):
    cache = open_store(tmp_path)
    keys = [key(i) for i in range(10)] + [b"\x01" * 31 + b"\x00", b"\x00" * 32]
    vectors = np.random.default_rng(0).normal(size=(len(keys), 4)).astype(np.float32)
    cache.add(keys[:5], vectors[:5])
    cache.add(keys[5:], vectors[5:])
    fresh = open_store(tmp_path)  # a new process sees the same
    order = [11, 0, 7, 10, 3, 3]
    np.testing.assert_array_equal(fresh.get([keys[i] for i in order]), vectors[order])
    assert fresh.has([key(99), keys[10]]) == [False, True]


def test_layer_specs_do_not_share_vectors(tmp_path):
    open_store(tmp_path, "a").add([key(1)], np.ones((1, 2)))
    assert open_store(tmp_path, "b").has([key(1)]) == [False]


def test_compaction_merges_shards_without_losing_or_duplicating(tmp_path):
    cache = open_store(tmp_path)
    rng = np.random.default_rng(1)
    expected = {}
    for batch in range(6):
        keys = [key(batch * 3 + j) for j in range(3)] + [key(1000)]  # one key repeats in every batch
        vectors = rng.normal(size=(4, 3)).astype(np.float32)
        vectors[-1] = 7.0
        cache.add(keys, vectors)
        expected.update(zip(keys, vectors))
    assert cache.compact(max_shards=2)
    assert len(list(cache.dir.glob("shard-*.h5"))) == 1
    fresh = open_store(tmp_path)
    assert len(fresh.index()) == len(expected)
    np.testing.assert_array_equal(fresh.get(list(expected)), np.stack(list(expected.values())))


def test_unfinished_and_damaged_shards_are_ignored(tmp_path):
    cache = open_store(tmp_path)
    cache.add([key(1)], np.ones((1, 2)))
    (cache.dir / ".tmp-shard-99.h5").write_bytes(b"half written")  # a killed writer's leftover
    (cache.dir / "shard-99999999999999999999-dead.h5").write_bytes(b"\x89HDF garbage")  # damaged on disk
    fresh = open_store(tmp_path)
    assert fresh.has([key(1), key(2)]) == [True, False]


def test_the_cache_key_follows_the_weights_hash_not_their_install_path():
    a = spec(weights="/venv-a/site-packages/w.pth", sha="ab12")
    b = spec(weights="/venv-b/site-packages/w.pth", sha="ab12")
    c = spec(weights="/venv-b/site-packages/w.pth", sha="cd34")
    assert a.layer_key("pre_logits") == b.layer_key("pre_logits") != c.layer_key("pre_logits")
    online = spec(weights="timm:resnet50:default")
    assert online.layer_key("pre_logits") != spec(weights="timm:resnet18:default").layer_key("pre_logits")
