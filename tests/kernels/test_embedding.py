"""Embedding CPU kernels against NumPy: gather, scatter-add (repeated ids), bad ids."""
import numpy as np
import pytest

from nexec.kernels.cpu.embedding import embedding_backward, embedding_forward
from nexec.testing import assert_close

V, D = 7, 3


def _ids(dtype, n=10, seed=0):
    ids = np.random.default_rng(seed).integers(0, V, (n, 1))
    ids[:3, 0] = [2, 2, 2]  # repeated ids add up in backward
    return ids.astype(dtype)


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64, np.float32, np.float64])
def test_forward_gathers_rows(id_dtype):
    rng = np.random.default_rng(1)
    table = rng.normal(size=(V, D))
    ids = _ids(id_dtype)
    out = np.full((len(ids), D), np.nan)
    embedding_forward(ids, table, out)
    assert_close(out, table[ids[:, 0].astype(int)], rtol=0)


def test_forward_into_a_row_strided_slice():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(V, D))
    ids = _ids(np.int32)
    wide = np.full((len(ids), D + 2), -1.0)
    embedding_forward(ids, table, wide[:, 1:1 + D])
    assert_close(wide[:, 1:1 + D], table[ids[:, 0]], rtol=0)
    assert (wide[:, 0] == -1).all() and (wide[:, -1] == -1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_scatter_adds_and_overwrites(dtype):
    rng = np.random.default_rng(3)
    ids = _ids(np.int64)
    d_out = rng.normal(size=(len(ids), D)).astype(dtype)
    d_table = np.full((V, D), 99.0, dtype)  # overwritten, not added to
    embedding_backward(ids, d_out, d_table)
    expected = np.zeros((V, D))
    np.add.at(expected, ids[:, 0], d_out.astype(np.float64))
    assert_close(d_table, expected)


def test_backward_is_the_transpose_of_forward_by_finite_differences():
    rng = np.random.default_rng(4)
    table = rng.normal(size=(V, D))
    ids = _ids(np.int32)
    w = rng.normal(size=(len(ids), D))  # loss = sum(w * out)
    out = np.empty((len(ids), D))

    def loss():
        embedding_forward(ids, table, out)
        return float((w * out).sum())

    from nexec.testing import numerical_gradient
    d_table = np.empty_like(table)
    embedding_backward(ids, w, d_table)
    assert_close(d_table, numerical_gradient(loss, table), rtol=1e-8)


@pytest.mark.parametrize("bad", [-1, V, 2.5e9, np.nan])
def test_bad_id_raises_before_writing(bad):
    table = np.ones((V, D))
    ids = _ids(np.float64)
    ids[5, 0] = bad
    out = np.full((len(ids), D), -3.0)
    with pytest.raises(ValueError, match="outside"):
        embedding_forward(ids, table, out)
    assert (out == -3.0).all()
    d_table = np.full((V, D), -3.0)
    with pytest.raises(ValueError, match="outside"):
        embedding_backward(ids, np.ones((len(ids), D)), d_table)
    assert (d_table == -3.0).all()
