"""Token pooling in numpy (the ONNX text path) gives what PyTorch pooling gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurizer._pooling import pool, pool_tokens


@pytest.mark.parametrize("method", ["mean", "cls", "max"])
def test_numpy_token_pooling_equals_torch_pooling(method):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(4, 7, 5)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 3 + [0] * 4, [1] + [0] * 6, [1] * 5 + [0] * 2])
    states[mask == 0] = 100.0  # padding must not leak into any pooling
    expected = pool(torch.from_numpy(states), method, torch.from_numpy(mask)).numpy()
    got = pool_tokens(states, method, mask)
    assert got.dtype == np.float32 and got.shape == (4, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert (got < 50).all()
