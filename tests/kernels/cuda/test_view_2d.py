"""``backend.view_2d``: device arrays seen as (rows, columns), the view every CUDA kernel takes."""
import numpy as np
import pytest

from nexec.kernels.cuda import backend

pytestmark = [pytest.mark.cudasim,
              pytest.mark.skipif(not backend.is_available(),
                                 reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")]


def _cases():
    whole = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    wide = np.arange(4 * 7, dtype=np.float64).reshape(4, 7)
    ids = np.arange(4 * 3, dtype=np.int64).reshape(4, 3)
    return [
        ("rank 3 as rows of the last axis", whole, lambda a: a, (20, 6)),
        ("rank 3 as rows of the last two axes", whole, lambda a: a, (4, 30)),
        ("every element its own row", ids, lambda a: a, (12, 1)),
        ("a channel slice", whole, lambda a: a[:, :, 2:5], (20, 3)),
        ("a one-channel slice", wide, lambda a: a[:, 3:4], (4, 1)),
        ("a slice on the middle axis", whole, lambda a: a[:, 1:3, :], (4, 12)),
    ]


@pytest.mark.parametrize("what, host, part, shape", _cases(), ids=[c[0] for c in _cases()])
def test_view_2d_reads_the_same_elements_as_numpy(what, host, part, shape):
    device = backend.to_device(host)
    view = backend.view_2d(part(device), *shape)
    expected = np.ascontiguousarray(part(host)).reshape(shape)
    np.testing.assert_array_equal(view.copy_to_host(), expected)
