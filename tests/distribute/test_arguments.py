"""Bad strategy arguments fail clearly before Ray starts; ``import nexec`` leaves Ray alone."""
import subprocess
import sys

import numpy as np
import pytest

from nexec import Input, Model, layers
from nexec.checks import ArgumentError, ArgumentTypeError
from nexec.distribute import RayDataParallel
from nexec.distribute.sources import describe, open_source


def _model():
    x = Input(shape=(3,))
    return Model(x, layers.Dense(2)(x))


@pytest.mark.parametrize("kwargs, error, words", [
    ({"num_workers": 0}, ArgumentError, "num_workers must be a positive int"),
    ({"num_workers": -2}, ArgumentError, "num_workers"),
    ({"num_workers": 2.0}, ArgumentTypeError, "num_workers must be a positive int"),
    ({"num_workers": True}, ArgumentTypeError, "num_workers"),
    ({"address": 5}, ArgumentTypeError, "address must be None"),
    ({"cpus_per_worker": 0}, ArgumentError, "cpus_per_worker"),
    ({"max_restarts": -3}, ArgumentError, "max_restarts"),
    ({"actor_options": ["x"]}, ArgumentTypeError, "actor_options must be a dict"),
])
def test_bad_strategy_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        RayDataParallel(**kwargs)


def test_distribute_must_be_a_strategy():
    with pytest.raises(ArgumentTypeError, match="distribute must be None or a strategy"):
        _model().compile("sgd", "mse", distribute="ray")


def test_batch_smaller_than_workers_is_refused_before_ray_starts():
    m = _model()
    m.compile("sgd", "mse", distribute=RayDataParallel(num_workers=4))
    x, y = np.zeros((10, 3), "float32"), np.zeros((10, 2), "float32")
    with pytest.raises(ArgumentError,
                       match=r"batch_size \(3\) is smaller than .*num_workers \(4\)"):
        m.fit(x, y, batch_size=3, verbose=0)


def test_sample_weights_with_a_strategy_are_refused_before_ray_starts():
    m = _model()
    m.compile("sgd", "mse", distribute=RayDataParallel(num_workers=2))
    x, y = np.zeros((10, 3), "float32"), np.zeros((10, 2), "float32")
    with pytest.raises(ArgumentError, match="sample_weight and class_weight are not supported"):
        m.fit(x, y, sample_weight=np.ones(10), verbose=0)


def test_import_nexec_does_not_import_ray():
    code = ("import sys, nexec, nexec.distribute; "
            "m = nexec.distribute.RayDataParallel(2); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_memmaps_travel_as_paths_and_other_arrays_as_objects(tmp_path):
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype="float32", mode="w+", shape=(10, 3))
    mm[:] = np.arange(30, dtype="float32").reshape(10, 3)
    mm.flush()
    view = np.ascontiguousarray(mm)[4:]  # what fit's checks and validation_split leave
    spec = describe(view, put=lambda a: pytest.fail("a memmap must not be copied"))
    assert spec[0] == "memmap" and spec[1] == str(path) and spec[2] == 4 * 3 * 4
    opened = open_source(spec, get=None)
    assert isinstance(opened, np.memmap) and np.array_equal(opened, view)
    plain = np.ones((2, 2))
    spec = describe(plain, put=lambda a: ("stored", a))
    assert spec[0] == "object" and open_source(spec, get=lambda r: r[1]) is plain
