"""Records Keras 3 models whose recurrent layers return their states, for
tests/layers/test_return_state_keras.py (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python record_return_state.py``. Each case
is saved as a Keras archive ``return_state/NAME.keras`` (float64, fixed random weights), with
``return_state/NAME.npz``: the inputs ``x0``, ``x1``..., targets ``t0``, ``t1``..., Keras'
predictions ``y0``, ``y1``..., the per-epoch MSE losses of three full-batch SGD epochs
(``losses``) and the predictions after them (``trained0``, ...). So the tests check the file
mapping (node references to a layer's second and third outputs), the forward pass and the
gradients that flow back through the states.
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 Keras: the numbers to ~1e-12
import keras  # noqa: E402
from keras import layers  # noqa: E402

keras.config.set_floatx("float64")
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "return_state")
B, T, F, U = 4, 5, 3, 4
LR, EPOCHS = 0.1, 3


def seq2seq_lstm() -> keras.Model:
    """Keras' seq2seq pattern: the encoder's h and c start the decoder."""
    enc_in = keras.Input((T, F), name="enc_in")
    dec_in = keras.Input((T - 1, F), name="dec_in")
    _, h, c = layers.LSTM(U, return_state=True, name="encoder")(enc_in)
    seq = layers.LSTM(U, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
    out = layers.TimeDistributed(layers.Dense(2), name="head")(seq)
    return keras.Model([enc_in, dec_in], out, name="seq2seq_lstm")


def gru_states_out() -> keras.Model:
    """The sequence and the final state both as outputs; the state also feeds a Dense."""
    x = keras.Input((T, F), name="x")
    seq, h = layers.GRU(U, return_sequences=True, return_state=True, go_backwards=True,
                        name="gru")(x)
    return keras.Model(x, [seq, layers.Dense(2, name="from_h")(h)], name="gru_states_out")


def gru_state_only() -> keras.Model:
    """Only the state is read (the output feeds nothing). SimpleRNN is checked against
    PyTorch only: Keras 3.15's SimpleRNN fails in float64 on JAX (its scan carries float32)."""
    x = keras.Input((T, F), name="x")
    _, h = layers.GRU(U, return_state=True, name="rnn")(x)
    return keras.Model(x, layers.Dense(3, name="out")(h), name="gru_state_only")


def bidirectional_lstm_states() -> keras.Model:
    """Keras' order of a Bidirectional's states: forward h, c, then backward h, c."""
    x = keras.Input((T, F), name="x")
    last, fh, fc, bh, bc = layers.Bidirectional(
        layers.LSTM(U, return_state=True), merge_mode="sum", name="bi")(x)
    return keras.Model(x, [last, fh, layers.Dense(2, name="from_bc")(bc)],
                       name="bidirectional_lstm_states")


def bidirectional_gru_sequences() -> keras.Model:
    """return_sequences inside a Bidirectional: Keras writes zero_output_for_mask=True into the
    wrapped layers' configs (what nexec's Bidirectional does with masked steps anyway)."""
    x = keras.Input((T, F), name="x")
    seq, fh, bh = layers.Bidirectional(
        layers.GRU(U, return_sequences=True, return_state=True), name="bi")(x)
    return keras.Model(x, [layers.TimeDistributed(layers.Dense(2), name="head")(seq), bh],
                       name="bidirectional_gru_sequences")


CASES = {"seq2seq_lstm": seq2seq_lstm, "gru_states_out": gru_states_out,
         "gru_state_only": gru_state_only, "bidirectional_lstm_states": bidirectional_lstm_states,
         "bidirectional_gru_sequences": bidirectional_gru_sequences}


def as_list(y: object) -> list[np.ndarray]:
    return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]


def record(name: str, seed: int) -> None:
    keras.utils.clear_session()
    model = CASES[name]()
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.5, w.shape))
    xs = [rng.normal(size=(B, *t.shape[1:])) for t in model.inputs]
    feed = xs if len(xs) > 1 else xs[0]
    ys = as_list(model.predict(feed, verbose=0))
    targets = [rng.normal(size=y.shape) for y in ys]
    model.save(os.path.join(HERE, f"{name}.keras"))
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse")
    hist = model.fit(feed, targets if len(targets) > 1 else targets[0], batch_size=B,
                     epochs=EPOCHS, shuffle=False, verbose=0)
    trained = as_list(model.predict(feed, verbose=0))
    np.savez(os.path.join(HERE, f"{name}.npz"), losses=np.array(hist.history["loss"]),
             **{f"x{j}": x for j, x in enumerate(xs)},
             **{f"t{j}": t for j, t in enumerate(targets)},
             **{f"y{j}": y for j, y in enumerate(ys)},
             **{f"trained{j}": y for j, y in enumerate(trained)})
    print("recorded", name, hist.history["loss"])


if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for i, case in enumerate(CASES):
        record(case, seed=10 + i)
