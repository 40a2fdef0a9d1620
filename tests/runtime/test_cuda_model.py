"""Whole models on device="cuda" in Numba's CUDA simulator, against the same fit on the CPU."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers
from nexec.kernels.cuda import backend

# The simulator is on for the test session (the repository's conftest.py); on a GPU machine
# run with NUMBA_ENABLE_CUDASIM=0 to use the device.
on_cuda = pytest.mark.skipif(not backend.is_available(),
                             reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")


def _model():
    a = Input(shape=(5,), dtype="float64")
    h = layers.Dense(4, activation="relu")(a)
    m = layers.Concatenate()([layers.Dense(3, activation="tanh")(h), h])
    r = layers.Activation("relu")(layers.Add()([layers.Dense(7)(m), m]))
    return Model(a, layers.Dense(3, activation="softmax")(r))


def _fit(device, epochs=2):
    nexec.clear_session()
    nexec.set_random_seed(3)
    model = _model()
    model.compile(optimizer=optimizers.Adam(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"], device=device)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 5))
    y = np.eye(3)[rng.integers(0, 3, 10)]
    history = model.fit(x, y, epochs=epochs, batch_size=4, verbose=0, shuffle=False)
    return model, history, x


@pytest.mark.cudasim
@on_cuda
def test_fit_on_cuda_matches_the_cpu():
    cpu, h_cpu, x = _fit("cpu")
    gpu, h_gpu, _ = _fit("cuda")
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(h_gpu.history["loss"], h_cpu.history["loss"], rtol=1e-5)
    assert h_gpu.history["accuracy"] == h_cpu.history["accuracy"]
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=1e-5, atol=1e-9)


@pytest.mark.cudasim
@on_cuda
def test_weights_round_trip_between_devices(tmp_path):
    gpu, _, x = _fit("cuda", epochs=1)
    on_gpu = gpu.predict(x)
    weights = gpu.get_weights()                       # copied back from the device
    gpu.save(str(tmp_path / "m.npz"))
    gpu.compile(optimizer="sgd", loss="categorical_crossentropy", device="cpu")
    np.testing.assert_allclose(gpu.predict(x), on_gpu, rtol=1e-5, atol=1e-9)
    restored = nexec.load_model(str(tmp_path / "m.npz"))
    for a, b in zip(restored.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    # set_weights on the host reaches the device at the next call
    gpu.compile(optimizer="sgd", loss="categorical_crossentropy", device="cuda")
    gpu.set_weights([np.zeros_like(w) for w in weights])
    np.testing.assert_allclose(gpu.predict(x), np.full((10, 3), 1 / 3), rtol=1e-6)


def test_asking_for_cuda_without_a_gpu_says_how_to_get_one():
    import subprocess
    import sys

    code = ("import nexec\n"
            "from nexec import Input, Model, layers\n"
            "x = Input(shape=(2,)); m = Model(x, layers.Dense(1)(x))\n"
            "print(nexec.devices())\n"
            "try:\n"
            "    m.compile(optimizer='sgd', loss='mse', device='cuda')\n"
            "except nexec.NexecError as e:\n"
            "    print('ERROR', e)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    env["CUDA_VISIBLE_DEVICES"] = ""  # hide any real GPU too
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "['cpu']" in done.stdout, done.stdout + done.stderr
    assert "ERROR device='cuda' was asked for, but no CUDA GPU is usable here" in done.stdout
    assert "pip install 'nexec[cuda]'" in done.stdout and "Traceback" not in done.stderr
