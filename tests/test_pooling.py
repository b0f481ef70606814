"""Pooling in numpy (the ONNX runtime) gives what PyTorch pooling gives, for token states, maps and vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurizer.backbones._pooling import pool, pool_array


@pytest.mark.parametrize("method", ["mean", "cls", "max"])
def test_numpy_token_pooling_equals_torch_pooling(method):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(4, 7, 5)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 3 + [0] * 4, [1] + [0] * 6, [1] * 5 + [0] * 2])
    states[mask == 0] = 100.0  # padding must not leak into any pooling
    expected = pool(torch.from_numpy(states), method, torch.from_numpy(mask)).numpy()
    got = pool_array(states, method, mask)
    assert got.dtype == np.float32 and got.shape == (4, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert (got < 50).all()


@pytest.mark.parametrize(
    ("shape", "method"),
    [((3, 8, 5, 5), "avg"), ((3, 8, 5, 5), "max"), ((3, 8, 5, 5), "gem"), ((3, 6, 4), "avg"), ((3, 16), "avg")],
)
def test_numpy_map_and_vector_pooling_equals_torch_pooling(shape, method):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    expected = pool(torch.from_numpy(x), method).numpy()
    got = pool_array(x, method)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_pooling_that_does_not_fit_the_output_is_refused():
    with pytest.raises(ValueError, match="does not apply"):
        pool_array(np.zeros((2, 3, 4, 4), np.float32), "cls")
