"""One native call per predict pass: the full batches of in-memory data run through one
generated function (``wholestep.CompiledPass``) and predict bit for bit as the Python loop,
for the partial last batch too; the loop stays where ``jit_step`` or the data say so."""
import io
import sys

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.runtime import wholestep
from tests.runtime.test_wholestep import _mlp, step_cache  # noqa: F401 - step_cache: autouse


def _cnn():
    """Two branches joined by Concatenate, then Flatten and Dense (small: no shards)."""
    x_in = Input(shape=(8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(x_in)
    b = layers.Conv2D(4, 1, activation="relu")(x_in)
    c = layers.Concatenate()([a, b])
    d = layers.MaxPooling2D(2)(layers.Conv2D(8, 3, padding="same", activation="relu")(c))
    return Model(x_in, layers.Dense(3, activation="softmax")(layers.Flatten()(d)))


def _embedding():
    ids = Input(shape=(5,), dtype="int32")
    e = layers.Embedding(20, 4)(ids)
    return Model(ids, layers.Dense(3, activation="tanh")(layers.Flatten()(e)))


def _two_outputs():
    x_in = Input(shape=(6,))
    h = layers.Dense(8, activation="relu")(x_in)
    return Model(x_in, [layers.Dense(2)(h), layers.Dense(3, activation="sigmoid")(h)])


def _x(build, n, seed=1):
    rng = np.random.default_rng(seed)
    if build is _embedding:
        return rng.integers(0, 20, (n, 5)).astype(np.int32)
    shape = {_mlp: (12,), _cnn: (8, 8, 3), _two_outputs: (6,)}[build]
    return rng.normal(size=(n, *shape)).astype(np.float32)


def _model(build, jit_step):
    nexec.clear_session()
    nexec.set_random_seed(3)
    model = build()
    model.compile(optimizer="sgd", loss="mse", jit_step=jit_step)
    return model


def _as_list(p):
    return p if isinstance(p, list) else [p]


def _pass_of(model, batch, tail=None):
    """The compiled pass of the ``batch``-row program (with the ``tail``-row program's)."""
    key = "forward pass" + ("" if tail is None else f" + {tail}")
    return model._trainer.predictor.executor.program(batch).compiled.get(key)


@pytest.mark.parametrize("build", [_mlp, _cnn, _embedding, _two_outputs])
@pytest.mark.parametrize("n, batch", [(40, 16), (48, 16), (10, 16), (7, 32), (1, 4)])
def test_a_pass_predicts_bit_identically_to_the_loop(build, n, batch):
    x = _x(build, n)
    loop = _as_list(_model(build, False).predict(x, batch_size=batch, verbose=0))
    model = _model(build, True)
    jit = _as_list(model.predict(x, batch_size=batch, verbose=0))
    assert len(loop) == len(jit) == (2 if build is _two_outputs else 1)
    for a, b in zip(loop, jit):
        assert a.dtype == b.dtype and a.shape == b.shape and a.shape[0] == n
        assert np.array_equal(a, b)
        assert np.isfinite(a).all() and np.abs(a).sum() > 0
    again = _as_list(model.predict(x, batch_size=batch, verbose=0))
    for a, b in zip(loop, again):
        assert np.array_equal(a, b)
    # batch_size >= n is one full batch of n rows: the pass runs it as well (the Embedding
    # kernel is typed by running it once: a first pass of one batch runs it in the loop)
    tail = n % batch if n > batch and n % batch else None
    compiled = _pass_of(model, min(batch, n), tail)
    assert isinstance(compiled, wholestep.CompiledPass)
    # the last, shorter batch: its own program, run inside the same function
    assert compiled.tail is (tail and model._trainer.predictor.executor.program(tail))
    if tail:
        assert _pass_of(model, tail) is None  # no pass of its own


def test_the_loop_stays_without_jit_step_and_before_compile():
    x = _x(_mlp, 40)
    nexec.set_random_seed(3)
    model = _mlp()
    model.predict(x, batch_size=16, verbose=0)  # never compiled: the Python loop
    assert "forward pass" not in model._predictor.executor.program(16).compiled
    model = _model(_mlp, False)
    model.predict(x, batch_size=16, verbose=0)
    assert "forward pass" not in model._trainer.predictor.executor.program(16).compiled
    assert model._trainer.predictor.executor.program(16).compiled["forward"] is False


def test_steps_and_streams_keep_the_loop():
    x = _x(_mlp, 40)
    model = _model(_mlp, True)
    loop = _model(_mlp, False).predict(x, batch_size=16, verbose=0)
    model = _model(_mlp, True)
    assert np.array_equal(model.predict(x, batch_size=16, verbose=0, steps=2), loop[:32])
    assert "forward pass" not in model._trainer.predictor.executor.program(16).compiled


def test_the_pass_converts_sources_once_as_the_loop_converts_each_batch():
    """``run_forward_pass`` with float64 sources and float64 results (the buffers are
    float32): the values the loop's ``np.copyto`` gives, batch by batch."""
    x = _x(_mlp, 48).astype(np.float64) / 3.0
    model = _model(_mlp, True)
    ex = model._trainer.predictor.executor
    prog = ex.program(16)
    expected = np.empty((48, 4), np.float64)
    for lo in range(0, 48, 16):
        ex.load(prog, [x], lo, lo + 16)
        ex._run(prog, "forward")
        ex.read_outputs(prog, [expected], lo, lo + 16)
    got = np.full((48, 4), np.nan)
    assert ex.run_forward_pass(prog, [x], [got], 1, 3) == 2
    assert np.isnan(got[:16]).all()  # only batches 1 and 2
    assert np.array_equal(got[16:], expected[16:])
    assert ex.run_forward_pass(prog, [x[:, :6]], [got], 0, 1) == 0  # rows of another shape
    assert ex.run_forward_pass(prog, [x], [got], 2, 2) == 0  # nothing to run


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_live_bar_advances_between_growing_native_calls(monkeypatch):
    x = _x(_mlp, 16 * 7 + 5)
    loop = _model(_mlp, False).predict(x, batch_size=16, verbose=0)
    model = _model(_mlp, True)
    pred = model._trainer.predictor
    calls = []
    run = pred.executor.run_forward_pass

    def recording(prog, sources, results, first, last, tail=None, with_tail=True):
        calls.append((first, last, tail is not None and with_tail))
        return run(prog, sources, results, first, last, tail, with_tail)

    monkeypatch.setattr(pred.executor, "run_forward_pass", recording)
    monkeypatch.setattr(pred, "BAR_SECONDS", 1e9)  # every call counts as short: chunks double
    out = _Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    got = model.predict(x, batch_size=16, verbose=1)
    assert calls == [(0, 1, False), (1, 3, False), (3, 7, True)]  # the last: and the tail
    assert np.array_equal(got, loop)
    assert "8/8 [" in out.getvalue()
    calls.clear()
    native = _count_native_passes(monkeypatch)
    got = model.predict(x, batch_size=16, verbose=0)  # silent: one call for all batches
    assert native == [(0, 7, True)]
    assert np.array_equal(got, loop)


def test_auto_compiles_the_pass_with_the_forward_step_or_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXEC_CACHE_DIR", str(tmp_path))  # nothing on disk yet
    x = _x(_two_outputs, 40)
    model = _model(_two_outputs, "auto")
    ex = model._trainer.predictor.executor
    ex.AUTO_AFTER_STEPS, ex.AUTO_MAX_STEP_S = 3, 1.0  # the rule, not this machine's speed
    loop = model.predict(x, batch_size=16, verbose=0)
    assert _pass_of(model, 16, 8) is None  # undecided: the loop ran and measured
    for _ in range(3):
        model.predict(x, batch_size=16, verbose=0)
    assert isinstance(ex.program(16).compiled["forward"], wholestep.CompiledStep)
    got = model.predict(x, batch_size=16, verbose=0)
    assert isinstance(_pass_of(model, 16, 8), wholestep.CompiledPass)  # and the 8-row tail
    assert all(np.array_equal(a, b) for a, b in zip(loop, got))
    # Another model of the same structure (as another process would) finds it on disk.
    again = _model(_two_outputs, "auto")
    again.predict(x, batch_size=16, verbose=0)
    assert isinstance(_pass_of(again, 16, 8), wholestep.CompiledPass)
    assert _pass_of(again, 16, 8).cached


def test_the_generated_pass_copies_rows_in_and_out_around_the_calls():
    model = _model(_mlp, True)
    model.predict(_x(_mlp, 32), batch_size=16, verbose=0)
    prog = model._trainer.predictor.executor.program(16)
    g = wholestep.generate_pass(prog)
    assert g.path.name.startswith("pass_") and wholestep.pass_refusal(prog) == []
    assert "for b in range(first, last):" in g.source
    # rows copied by flat loops (vectorised) before and after the 3 Dense calls
    assert "f0[j] = fs0[lo * 12 + j]" in g.source and "fr0[lo * 4 + j] = f1[j]" in g.source
    assert g.source.count("\n        k") == 3


def test_a_thousand_rows_at_batch_128_predict_in_one_call_with_the_tail(monkeypatch):
    x = _x(_mlp, 1000)
    loop = _model(_mlp, False).predict(x, batch_size=128, verbose=0)
    model = _model(_mlp, True)
    ex = model._trainer.predictor.executor
    calls = []
    run = ex.run_forward_pass

    def recording(prog, sources, results, first, last, tail=None, with_tail=True):
        ran = run(prog, sources, results, first, last, tail, with_tail)
        calls.append((prog.batch, first, last, tail and tail.batch, ran))
        return ran

    monkeypatch.setattr(ex, "run_forward_pass", recording)
    native = _count_native_passes(monkeypatch)
    for _ in range(2):
        assert np.array_equal(model.predict(x, batch_size=128, verbose=0), loop)
    assert calls == [(128, 0, 7, 104, 8)]  # 7 full batches and the 104-row tail
    # The second predict finds the same pass ready and calls it directly (Predictor's
    # repeat pass): one native call each time, over the same batches.
    assert native == [(0, 7, True)] * 2
    assert _pass_of(model, 128, 104).tail is ex.program(104)


def _count_native_passes(monkeypatch) -> list:
    """Records ``(first, last, tail)`` of every native pass call from now on."""
    native = []
    call = wholestep.CompiledPass.__call__

    def counted(self, sources, results, first, last, tail=False):
        native.append((first, last, tail))
        return call(self, sources, results, first, last, tail)

    monkeypatch.setattr(wholestep.CompiledPass, "__call__", counted)
    return native


def test_the_pass_runs_the_tail_with_converted_sources_and_results():
    """``run_forward_pass`` with a tail, float64 sources and float64 results (the buffers
    are float32): the values the loop's ``np.copyto`` gives, batch by batch."""
    x = _x(_mlp, 40).astype(np.float64) / 3.0
    model = _model(_mlp, True)
    ex = model._trainer.predictor.executor
    prog, tail = ex.program(16), ex.program(8)
    expected = np.empty((40, 4), np.float64)
    for lo, p in ((0, prog), (16, prog), (32, tail)):
        ex.load(p, [x], lo, lo + p.batch)
        ex._run(p, "forward")
        ex.read_outputs(p, [expected], lo, lo + p.batch)
    got = np.full((40, 4), np.nan)
    assert ex.run_forward_pass(prog, [x], [got], 1, 2, tail, with_tail=False) == 1
    assert np.isnan(got[:16]).all() and np.isnan(got[32:]).all()
    assert ex.run_forward_pass(prog, [x], [got], 2, 2, tail) == 1  # the tail alone
    assert np.array_equal(got[16:], expected[16:]) and np.isnan(got[:16]).all()
    assert ex.run_forward_pass(prog, [x[:30]], [got], 2, 2, tail) == 0  # no rows for it
    got[:] = np.nan
    assert ex.run_forward_pass(prog, [x], [got], 0, 2, tail) == 3
    assert np.array_equal(got, expected)


def test_a_tail_that_cannot_be_compiled_in_runs_in_the_loop(monkeypatch):
    x = _x(_mlp, 40)
    loop = _model(_mlp, False).predict(x, batch_size=16, verbose=0)
    refusal = wholestep.pass_refusal
    monkeypatch.setattr(wholestep, "pass_refusal", lambda prog, tail=None: (
        ["tail: refused by the test"] if tail is not None else refusal(prog)))
    model = _model(_mlp, True)
    assert np.array_equal(model.predict(x, batch_size=16, verbose=0), loop)
    assert _pass_of(model, 16, 8) is False and _pass_of(model, 16).tail is None
    assert isinstance(model._trainer.predictor.executor.program(8).compiled["forward"],
                      wholestep.CompiledStep)  # the 8 rows: the loop's (compiled) step


def _repeat_passes(monkeypatch, pred) -> list:
    """Records every predict the Predictor's repeat pass answered (``None``: it left the
    call to the general path)."""
    answered = []
    repeat = pred._repeat_pass

    def recording(x, batch_size):
        out = repeat(x, batch_size)
        answered.append(out is not None)
        return out

    monkeypatch.setattr(pred, "_repeat_pass", recording)
    return answered


@pytest.mark.parametrize("build", [_mlp, _two_outputs])
def test_a_repeated_predict_is_the_loops_for_every_size_dtype_layout_and_weights(
        build, monkeypatch):
    """The repeat pass (one native call, nothing prepared) answers only what an earlier
    pass left ready, and every answer is the loop's, bit for bit: another row count,
    batch size, dtype or memory layout, or new weights, give the loop's results too."""
    model, loop = _model(build, True), _model(build, False)
    answered = _repeat_passes(monkeypatch, model._trainer.predictor)
    x = _x(build, 100)

    def same(data, batch_size):
        got = _as_list(model.predict(data, batch_size=batch_size, verbose=0))
        want = _as_list(loop.predict(data, batch_size=batch_size, verbose=0))
        assert all(g.dtype == w.dtype and np.array_equal(g, w) for g, w in zip(got, want))

    same(x, 16)
    same(x, 16)
    assert answered == [False, True]  # the first pass prepared what the second reuses
    same(x[:37], 16)  # another tail: a new pass, then its repeat
    same(x[:37], 16)
    same(x, 32)  # another batch size
    same(x, None)  # the default, 32: the same as batch_size=32
    assert answered[2:] == [False, True, False, True]
    same(x.astype(np.float64), 16)  # converted by the general path, never repeated as is
    same(x.astype(np.float64), 16)
    assert answered[6:] == [False, False]
    same(np.asfortranarray(x), 16)  # a layout the pass cannot take as is: the general path converts
    assert answered[8:] == [False]
    for m in (model, loop):  # new weights: the same compiled pass reads them
        m.set_weights([w * 0.5 + 0.1 for w in m.get_weights()])
    same(x, 16)
    rng = np.random.default_rng(0)
    y = [rng.normal(size=(100, *o.feature_shape)).astype(np.float32) for o in model.outputs]
    for m in (model, loop):  # and weights a fit changed
        m.fit(x, y if len(y) > 1 else y[0], batch_size=16, epochs=1, verbose=0, shuffle=False)
    same(x, 16)
    assert answered[9:] == [True, True]


def test_a_repeated_predict_raises_what_the_first_raises(monkeypatch):
    """Bad input after a repeat pass was armed: the same clear errors, before any kernel."""
    model = _model(_mlp, True)
    answered = _repeat_passes(monkeypatch, model._trainer.predictor)
    x = _x(_mlp, 40)
    model.predict(x, batch_size=16, verbose=0)
    model.predict(x, batch_size=16, verbose=0)
    assert answered == [False, True]
    bad = x.copy()
    bad[7, 3] = np.nan
    for _ in range(2):
        with pytest.raises(nexec.errors.DataError, match="contains NaN or infinite values"):
            model.predict(bad, batch_size=16, verbose=0)
        bad[7, 3] = np.inf
    with pytest.raises(nexec.errors.DataError, match=r"expects shape \(None, 12\)"):
        model.predict(x[:, :6], batch_size=16, verbose=0)
    for size in (0, -1, 1.5):
        with pytest.raises((nexec.checks.ArgumentError, nexec.checks.ArgumentTypeError)):
            model.predict(x, batch_size=size, verbose=0)
    assert model.predict(x[:0], batch_size=16, verbose=0).shape == (0, 4)  # as the loop
    assert np.array_equal(model.predict(x, batch_size=16, verbose=0),
                          _model(_mlp, False).predict(x, batch_size=16, verbose=0))
