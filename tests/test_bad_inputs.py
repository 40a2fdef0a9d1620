"""A catalogue of bad inputs and faults: each must raise a nexec error (or a ValueError /
TypeError / OSError nexec raises on purpose) whose message names the problem, before any
kernel runs, with no crash, hang or silent wrong answer. Add a row for every new one."""
import json
import os

import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers, optimizers
from nexec.errors import NexecError, SavedModelError
from nexec.saving import load_model, model_from_json


def _mlp(compiled=True):
    x = Input(shape=(4,), name="x")
    m = Model(x, layers.Dense(2, activation="softmax", name="out")(x))
    if compiled:
        m.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    return m


X = np.ones((6, 4), np.float32)
Y = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1]]


def _two_outputs():
    x = Input(shape=(4,), name="x")
    m = Model(x, [layers.Dense(2, activation="softmax", name="a")(x),
                  layers.Dense(2, activation="softmax", name="b")(x)])
    m.compile("sgd", "categorical_crossentropy")
    return m


def _file(tmp, name, content):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(content)
    return path


def _batches(*bad, n=4):
    """A generator of ``n`` good (x, y) batches of 2 rows, batch ``i`` replaced by ``bad[i]``
    where given as ``{i: batch}``."""
    swap = bad[0] if bad else {}
    for i in range(n):
        yield swap.get(i, (X[:2], Y[:2]))


class _Data(nexec.utils.PyDataset):
    def __init__(self, bad=None):
        super().__init__()
        self.bad = bad or {}

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.bad.get(i, (X[:2], Y[:2]))


class _Endless(nexec.utils.PyDataset):
    num_batches = None

    def __getitem__(self, i):
        return X[:2], Y[:2]


def _memmap_with_nan(tmp):
    path = os.path.join(tmp, "x.npy")
    mm = np.lib.format.open_memmap(path, "w+", np.float32, (7, 4))
    mm[:] = 1
    mm[6, 2] = np.nan
    mm.flush()
    return np.load(path, mmap_mode="r")


def _fit(data, **kw):
    kw.setdefault("verbose", 0)
    kw.setdefault("shuffle", False)
    return _mlp().fit(data, **kw)


def _saved(tmp):
    path = os.path.join(tmp, "m.npz")
    _mlp().save(path)
    return path


# A plugin written to a file (Numba caches need one) and registered for one case; the
# registry is rebuilt afterwards.
PLUGIN = """
from nexec.plugin import Kernel, Layer, hookimpl, kernel, rows


@kernel
def double(out, x):
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = 2 * x[i, j]


@kernel
def add_text(out, x):
    out[0, 0] = x[0, 0] + "text"  # Numba cannot type this


class Doubled(Layer):
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class DoubledKernel(Kernel):
    layer_type = "Doubled"
    FAULT = None

    def forward(self, call):
        out, x = rows(call.output), rows(call.inputs[0])
        if self.FAULT == "arity":
            return [(double, (out, x, x))]
        return [(add_text, (out, x))]

    def backward(self, call):
        return []


@hookimpl
def nexec_layers():
    return [Doubled]


@hookimpl
def nexec_kernels():
    return [DoubledKernel()]
"""


def _with_plugin(tmp, source, action):
    """Registers ``source`` as plugin 'nexec_catalogue', runs ``action(module)``, restores."""
    import importlib.util
    import sys
    import warnings

    from nexec.plugins import registry, reset_registry

    path = os.path.join(tmp, "nexec_catalogue.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("nexec_catalogue", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nexec_catalogue"] = module
    try:
        spec.loader.exec_module(module)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            registry().register(module, "nexec_catalogue")
        return action(module)
    finally:
        del sys.modules["nexec_catalogue"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reset_registry()


def _doubled_model(module, fault):
    module.DoubledKernel.FAULT = fault
    x = Input(shape=(4,), name="x")
    return Model(x, module.Doubled(name="dbl")(layers.Dense(4, name="d")(x)))


def _registry_check(module):
    from nexec.plugins import registry

    registry().check()


def _int_model():
    x = Input(shape=(3,), dtype="int32", name="ids")
    return Model(x, layers.Dense(2)(layers.Flatten()(layers.Embedding(10, 4)(x))))


def _flipped(tmp):
    data = bytearray(open(_saved(tmp), "rb").read())
    for i in range(len(data) // 2, len(data) // 2 + 40):
        data[i] ^= 0xFF
    return _file(tmp, "flip.npz", bytes(data))


def _other_weights(tmp):
    x = Input(shape=(4,))
    path = os.path.join(tmp, "w3.weights.npz")
    Model(x, layers.Dense(3, name="other")(x)).save_weights(path)
    return path


# (id, action(tmp_path), expected exception types, regex the message must match)
CASES = [
    # --- batch sizes -------------------------------------------------------------------
    ("predict batch_size=-5", lambda t: _mlp().predict(X, batch_size=-5), ValueError,
     r"batch_size.*-5"),
    ("predict batch_size=0", lambda t: _mlp().predict(X, batch_size=0), ValueError,
     r"batch_size.*0"),
    ("predict batch_size=2.5", lambda t: _mlp().predict(X, batch_size=2.5), TypeError,
     r"batch_size.*2\.5"),
    ("predict batch_size=True", lambda t: _mlp().predict(X, batch_size=True), TypeError,
     r"batch_size.*True"),
    ("predict batch_size='8'", lambda t: _mlp().predict(X, batch_size="8"), TypeError,
     r"batch_size"),
    ("fit batch_size=-5", lambda t: _mlp().fit(X, Y, batch_size=-5, verbose=0), ValueError,
     r"batch_size.*-5"),
    ("fit batch_size=0", lambda t: _mlp().fit(X, Y, batch_size=0, verbose=0), ValueError,
     r"batch_size.*0"),
    ("fit batch_size=2.5", lambda t: _mlp().fit(X, Y, batch_size=2.5, verbose=0), TypeError,
     r"batch_size"),
    ("evaluate batch_size=-1", lambda t: _mlp().evaluate(X, Y, batch_size=-1, verbose=0),
     ValueError, r"batch_size.*-1"),
    ("evaluate batch_size=1.0", lambda t: _mlp().evaluate(X, Y, batch_size=1.0, verbose=0),
     TypeError, r"batch_size"),
    # --- layers ------------------------------------------------------------------------
    ("Dense units=2.5", lambda t: layers.Dense(2.5), TypeError, r"units.*2\.5"),
    ("Dense units=0", lambda t: layers.Dense(0), ValueError, r"units.*0"),
    ("Dense units=-3", lambda t: layers.Dense(-3), ValueError, r"units.*-3"),
    ("Dense units='8'", lambda t: layers.Dense("8"), TypeError, r"units"),
    ("Dense units=True", lambda t: layers.Dense(True), TypeError, r"units"),
    ("Dense activation='relux'", lambda t: layers.Dense(2, activation="relux"), ValueError,
     r"activation 'relux'"),
    ("Conv2D filters=0", lambda t: layers.Conv2D(0, 3), ValueError, r"filters.*0"),
    ("Conv2D filters=1.5", lambda t: layers.Conv2D(1.5, 3), TypeError, r"filters"),
    ("Conv2D kernel_size=0", lambda t: layers.Conv2D(2, 0), ValueError, r"kernel_size"),
    ("Conv2D kernel_size=2.5", lambda t: layers.Conv2D(2, 2.5), ValueError, r"kernel_size"),
    ("Conv2D kernel_size=(3,)", lambda t: layers.Conv2D(2, (3,)), ValueError, r"kernel_size"),
    ("Conv2D strides=-1", lambda t: layers.Conv2D(2, 3, strides=-1), ValueError, r"strides"),
    ("Conv2D padding='full'", lambda t: layers.Conv2D(2, 3, padding="full"), ValueError,
     r"padding"),
    ("Conv2D channels_first", lambda t: layers.Conv2D(2, 3, data_format="channels_first"),
     ValueError, r"data_format"),
    ("Conv2D on a rank-2 input", lambda t: layers.Conv2D(2, 3)(Input(shape=(4,))),
     ValueError, r"Conv2D|rank|shape"),
    ("Dense on an unknown last axis", lambda t: layers.Dense(2)(Input(shape=(4, None))),
     ValueError, r"unknown dimension"),
    ("Activation 'nope'", lambda t: layers.Activation("nope"), ValueError, r"activation"),
    # --- inputs and graphs -------------------------------------------------------------
    ("Input shape=(-5,)", lambda t: Input(shape=(-5,)), ValueError, r"shape.*-5"),
    ("Input shape=(0, 3)", lambda t: Input(shape=(0, 3)), ValueError, r"shape"),
    ("Input shape=(2.5,)", lambda t: Input(shape=(2.5,)), ValueError, r"shape"),
    ("Input shape=None", lambda t: Input(shape=None), ValueError, r"shape"),
    ("Input dtype=int8", lambda t: Input(shape=(3,), dtype="int8"), ValueError, r"dtype"),
    ("Input shape=(None, 8)", lambda t: Input(shape=(None, 8)), ValueError, r"pad"),
    ("Model inputs=[a, a]", lambda t: (lambda a: Model([a, a], layers.Dense(1)(a)))(
        Input(shape=(3,))), ValueError, r"more than once"),
    ("Model input not an Input", lambda t: (lambda a: Model(layers.Dense(2)(a),
                                                            layers.Dense(1)(a)))(
        Input(shape=(3,))), ValueError, r"Input"),
    ("Model inputs=array", lambda t: Model(np.ones(3), np.ones(3)), ValueError, r"inputs"),
    ("Model unused input", lambda t: (lambda a, b: Model([a, b], layers.Dense(1)(a)))(
        Input(shape=(3,)), Input(shape=(3,))), ValueError, r"not used"),
    ("Sequential.add(3)", lambda t: Sequential().add(3), TypeError, r"layer"),
    # --- compile -----------------------------------------------------------------------
    ("SGD learning_rate=-1", lambda t: optimizers.SGD(-1.0), ValueError, r"learning_rate"),
    ("Adam learning_rate=nan", lambda t: optimizers.Adam(float("nan")), ValueError,
     r"learning_rate.*nan"),
    ("RMSprop learning_rate=inf", lambda t: optimizers.RMSprop(float("inf")), ValueError,
     r"learning_rate.*inf"),
    ("Adam learning_rate='fast'", lambda t: optimizers.Adam("fast"), TypeError,
     r"learning_rate"),
    ("learning_rate setter -1", lambda t: setattr(optimizers.SGD(), "learning_rate", -1.0),
     ValueError, r"learning_rate"),
    ("compile optimizer=3", lambda t: _mlp(False).compile(3, "mse"), ValueError,
     r"optimizer"),
    ("compile optimizer='adamw2'", lambda t: _mlp(False).compile("adamw2", "mse"),
     (ValueError, NexecError), r"adamw2"),
    ("compile no loss", lambda t: _mlp(False).compile("sgd"), ValueError, r"loss"),
    ("compile loss='msee'", lambda t: _mlp(False).compile("sgd", "msee"),
     (ValueError, NexecError), r"msee"),
    ("compile loss_weights=['abc']", lambda t: _mlp(False).compile(
        "sgd", "mse", loss_weights=["abc"]), TypeError, r"loss_weights.*abc"),
    ("compile loss_weights=[nan]", lambda t: _mlp(False).compile(
        "sgd", "mse", loss_weights=[float("nan")]), ValueError, r"loss_weights"),
    ("compile loss_weights two for one", lambda t: _mlp(False).compile(
        "sgd", "mse", loss_weights=[1.0, 2.0]), ValueError, r"loss_weights"),
    ("compile metrics='accuracy'", lambda t: _mlp(False).compile(
        "sgd", "mse", metrics="accuracy"), TypeError, r"metrics.*accuracy"),
    ("compile metrics=['acuracy']", lambda t: _mlp(False).compile(
        "sgd", "mse", metrics=["acuracy"]), ValueError, r"acuracy"),
    ("compile loss dict wrong key", lambda t: _mlp(False).compile("sgd", {"nope": "mse"}),
     ValueError, r"nope"),
    ("compile device='tpu'", lambda t: _mlp(False).compile("sgd", "mse", device="tpu"),
     (ValueError, NexecError), r"tpu"),
    # --- data --------------------------------------------------------------------------
    ("fit before compile", lambda t: _mlp(False).fit(X, Y, verbose=0), RuntimeError,
     r"compile"),
    ("evaluate empty", lambda t: _mlp().evaluate(X[:0], Y[:0], verbose=0), ValueError,
     r"no samples"),
    ("train_on_batch empty", lambda t: _mlp().train_on_batch(X[:0], Y[:0]), ValueError,
     r"no samples"),
    ("fit empty", lambda t: _mlp().fit(X[:0], Y[:0], verbose=0), ValueError,
     r"no training samples"),
    ("predict wrong feature shape", lambda t: _mlp().predict(np.ones((3, 5))), ValueError,
     r"shape"),
    ("predict NaN input", lambda t: _mlp().predict(np.full((2, 4), np.nan)), ValueError,
     r"NaN"),
    ("predict strings", lambda t: _mlp().predict(np.array([["a"] * 4])), ValueError,
     r"dtype"),
    ("predict x=None", lambda t: _mlp().predict(None), ValueError, r"x"),
    ("fit x/y length mismatch", lambda t: _mlp().fit(X, Y[:3], verbose=0), ValueError,
     r"samples"),
    ("fit validation_split=1.5", lambda t: _mlp().fit(X, Y, validation_split=1.5, verbose=0),
     ValueError, r"validation_split"),
    # --- sample and class weights --------------------------------------------------------
    ("fit sample_weight too short", lambda t: _mlp().fit(X, Y, sample_weight=np.ones(4),
                                                         verbose=0),
     ValueError, r"sample_weight.*4 entries.*6 samples"),
    ("fit sample_weight NaN", lambda t: _mlp().fit(
        X, Y, sample_weight=np.array([1, 2, np.nan, 1, 1, 1]), verbose=0),
     ValueError, r"sample_weight.*NaN"),
    ("fit sample_weight (6, 2)", lambda t: _mlp().fit(X, Y, sample_weight=np.ones((6, 2)),
                                                      verbose=0),
     ValueError, r"sample_weight.*\(6, 2\).*accepted.*\(6,\)"),
    ("fit sample_weight strings", lambda t: _mlp().fit(X, Y, sample_weight=["a"] * 6,
                                                       verbose=0),
     TypeError, r"sample_weight.*numbers"),
    ("fit sample_weight and class_weight", lambda t: _mlp().fit(
        X, Y, sample_weight=np.ones(6), class_weight={0: 1.0}, verbose=0),
     ValueError, r"class_weight.*sample_weight.*same time"),
    ("fit class_weight unknown class", lambda t: _mlp().fit(X, Y, class_weight={0: 1.0, 5: 2.0},
                                                            verbose=0),
     ValueError, r"class_weight.*class 5.*2 classes"),
    ("fit class_weight key 'a'", lambda t: _mlp().fit(X, Y, class_weight={"a": 1.0}, verbose=0),
     TypeError, r"class_weight keys.*integer"),
    ("fit class_weight value nan", lambda t: _mlp().fit(X, Y, class_weight={0: float("nan")},
                                                        verbose=0),
     TypeError, r"class_weight values.*finite"),
    ("fit class_weight list", lambda t: _mlp().fit(X, Y, class_weight=[1.0, 2.0], verbose=0),
     TypeError, r"class_weight must be a dict"),
    ("fit class_weight two outputs", lambda t: _two_outputs().fit(
        X, [Y, Y], class_weight={0: 1.0}, verbose=0),
     ValueError, r"class_weight.*single output"),
    ("fit sample_weight 3 for 2 outputs", lambda t: _two_outputs().fit(
        X, [Y, Y], sample_weight=[np.ones(6)] * 3, verbose=0),
     ValueError, r"sample_weight has 3 arrays for 2 output"),
    ("fit sample_weight dict unknown output", lambda t: _two_outputs().fit(
        X, [Y, Y], sample_weight={"a": np.ones(6), "nope": np.ones(6)}, verbose=0),
     ValueError, r"sample_weight dict.*nope"),
    ("fit validation_data 4-tuple", lambda t: _mlp().fit(
        X, Y, validation_data=(X, Y, np.ones(6), 1), verbose=0),
     ValueError, r"validation_data.*val_sample_weight"),
    ("evaluate sample_weight too long", lambda t: _mlp().evaluate(
        X, Y, sample_weight=np.ones(7), verbose=0), ValueError, r"sample_weight.*7 entries"),
    ("compile weighted_metrics", lambda t: _mlp(False).compile(
        "sgd", "mse", weighted_metrics=["accuracy"]), ValueError, r"weighted_metrics"),
    ("fit callbacks=[3]", lambda t: _mlp().fit(X, Y, callbacks=[3], verbose=0), TypeError,
     r"callbacks"),
    ("fit wrong dict key", lambda t: _mlp().fit({"nope": X}, Y, verbose=0), ValueError,
     r"nope"),
    ("set_num_threads(0)", lambda t: nexec.set_num_threads(0), ValueError, r"positive int"),
    ("set_weights wrong count", lambda t: _mlp().set_weights([]), ValueError, r"weight"),
    # --- files -------------------------------------------------------------------------
    ("load_model missing", lambda t: load_model(os.path.join(t, "nope.npz")),
     FileNotFoundError, r"nope\.npz"),
    ("load_model text file", lambda t: load_model(_file(t, "a.npz", b"hello")), ValueError,
     r"a\.npz.*not a nexec model"),
    ("load_model truncated", lambda t: load_model(_file(
        t, "b.npz", open(_saved(t), "rb").read()[:300])), ValueError, r"b\.npz"),
    ("load_model plain npz", lambda t: (np.savez(os.path.join(t, "c.npz"), a=np.ones(2)),
                                        load_model(os.path.join(t, "c.npz"))), ValueError,
     r"format marker"),
    ("load_model pickled objects", lambda t: (np.savez(
        os.path.join(t, "d.npz"), __format__=np.array([1]), __config__=np.array("{}"),
        evil=np.array([{"a": 1}], dtype=object)), load_model(os.path.join(t, "d.npz"))),
     ValueError, r"d\.npz"),
    ("save to a directory", lambda t: _mlp().save(t), OSError, r"directory"),
    ("save to /dev/null", lambda t: _mlp().save("/dev/null"), OSError,
     r"not a regular file.*/dev/null"),
    ("save into a missing folder", lambda t: _mlp().save(os.path.join(t, "no", "m.npz")),
     OSError, r"no.m\.npz"),
    ("model_from_json garbage", lambda t: model_from_json("{not json"), SavedModelError,
     r"not valid JSON"),
    ("model_from_json a list", lambda t: model_from_json("[1, 2]"), SavedModelError,
     r"class_name"),
    ("model_from_json unknown layer", lambda t: model_from_json(json.dumps(
        {"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "Dense9", "config": {}}]}})), ValueError,
     r"Dense9"),
    # --- streamed data: generators, PyDatasets, memory maps (errors name the batch) ------
    ("generator batch with NaN", lambda t: _fit(_batches({2: (np.full((2, 4), np.nan), Y[:2])})),
     ValueError, r"Batch 2 .*generator.*NaN"),
    ("generator batch of the wrong shape", lambda t: _fit(_batches({1: (X[:2, :3], Y[:2])})),
     ValueError, r"Batch 1 .*shape"),
    ("generator batch of strings", lambda t: _fit(_batches({0: (np.array([["a"] * 4]), Y[:1])})),
     ValueError, r"Batch 0 .*dtype"),
    ("generator batch not a tuple", lambda t: _fit(_batches({3: 7})), ValueError,
     r"Batch 3 .*tuple.*int"),
    ("generator batch of 4 entries", lambda t: _fit(_batches({0: (X, Y, None, None)})),
     ValueError, r"Batch 0 .*tuple.*length 4"),
    ("generator batch x and y lengths differ", lambda t: _fit(_batches({1: (X[:2], Y[:3])})),
     ValueError, r"Batch 1 .*2 samples but y has 3"),
    ("generator batch without targets", lambda t: _fit(_batches({0: (X[:2],)})), ValueError,
     r"Batch 0 .*no targets"),
    ("generator batch of 0 rows", lambda t: _fit(_batches({2: (X[:0], Y[:0])})), ValueError,
     r"Batch 2 .*no samples"),
    ("generator batch bad sample_weight", lambda t: _fit(_batches({0: (X[:2], Y[:2], [1.0])})),
     ValueError, r"Batch 0 .*sample_weight.*1 entries but there are 2 samples"),
    ("generator batch NaN sample_weight",
     lambda t: _fit(_batches({0: (X[:2], Y[:2], [1.0, np.nan])})), ValueError,
     r"Batch 0 .*sample_weight.*NaN"),
    ("sample_weight beside a generator",
     lambda t: _mlp().fit(_batches(), sample_weight=np.ones(2), verbose=0), ValueError,
     r"generator.*`sample_weight` should not be passed"),
    ("generator with y", lambda t: _mlp().fit(_batches(), Y, verbose=0), ValueError,
     r"generator.*`y` should not be passed"),
    ("empty generator", lambda t: _fit(iter([])), ValueError, r"gave no batches"),
    ("validation_split with a generator", lambda t: _fit(_batches(), validation_split=0.5),
     ValueError, r"validation_split.*generator"),
    ("validation_data of 4 entries", lambda t: _fit(X, y=Y, validation_data=(X, Y, X, Y)),
     ValueError, r"validation_data.*4"),
    ("predict steps=-1", lambda t: _mlp().predict(_batches(), steps=-1), ValueError,
     r"steps.*-1"),
    ("evaluate steps=1.5", lambda t: _mlp().evaluate(_batches(), steps=1.5), ValueError,
     r"steps.*1\.5"),
    ("PyDataset batch of the wrong target shape",
     lambda t: _fit(_Data({3: (X[:2], np.eye(3, dtype=np.float32)[:2])})), ValueError,
     r"Batch 3 .*PyDataset.*shape"),
    ("PyDataset without a length and no steps", lambda t: _fit(_Endless()), ValueError,
     r"no length.*steps_per_epoch"),
    ("memmap with NaN in the last batch",
     lambda t: _mlp().fit(_memmap_with_nan(t), Y[[0, 1, 0, 1, 0, 1, 0]], batch_size=2,
                          shuffle=False, verbose=0), ValueError,
     r"Batch 3 .*memory-mapped.*NaN"),
    ("Sequential without input shape on a generator",
     lambda t: _unbuilt_sequential().fit(_batches(), verbose=0), ValueError,
     r"input_shape"),
    # --- plugins (runtime/checking.py, plugins/manager.py) ----------------------------
    ("plugin kernel of the wrong arity", lambda t: _with_plugin(
        t, PLUGIN, lambda m: _doubled_model(m, "arity").predict(X)), NexecError,
     r"layer 'dbl' \(Doubled\), from plugin 'nexec_catalogue'.*'double' takes \(out, x\)"),
    ("plugin kernel Numba cannot type", lambda t: _with_plugin(
        t, PLUGIN, lambda m: _doubled_model(m, "types").predict(X)), NexecError,
     r"plugin 'nexec_catalogue'.*'add_text' cannot be compiled by Numba.*float32 array"),
    ("plugin hook returning garbage", lambda t: _with_plugin(
        t, "from nexec.plugin import hookimpl\n\n\n@hookimpl\ndef nexec_layers():\n"
           "    return 5\n", _registry_check), NexecError,
     r"plugin 'nexec_catalogue' hook nexec_layers returned int 5"),
    # --- weights -----------------------------------------------------------------------
    ("set_weights wrong shape", lambda t: _mlp().set_weights([np.ones((3, 3)), np.ones(2)]),
     ValueError, r"'out'.*'kernel' has shape \(4, 2\), got \(3, 3\)"),
    ("set_weights strings", lambda t: _mlp().set_weights([np.full((4, 2), "a"), np.ones(2)]),
     TypeError, r"'kernel' must hold numbers.*<U1"),
    ("set_weights an array", lambda t: _mlp().set_weights(np.ones(3)), TypeError,
     r"set_weights takes a list of 2 arrays, got ndarray"),
    ("load_weights of another model", lambda t: _mlp().load_weights(_other_weights(t)),
     ValueError, r"missing.*out/kernel"),
    ("load_weights missing file", lambda t: _mlp().load_weights(os.path.join(t, "no.npz")),
     FileNotFoundError, r"no\.npz"),
    ("load_model bit-flipped", lambda t: load_model(_flipped(t)), SavedModelError,
     r"flip\.npz.*corrupted"),
    # --- callbacks and fit arguments ---------------------------------------------------
    ("fit callbacks=print", lambda t: _mlp().fit(X, Y, callbacks=print, verbose=0), TypeError,
     r"callbacks must be a list.*builtin_function_or_method"),
    ("fit callbacks=[a Callback class]", lambda t: _mlp().fit(
        X, Y, callbacks=[nexec.callbacks.EarlyStopping], verbose=0), TypeError,
     r"Callback objects, got type"),
    ("fit epochs=-1", lambda t: _mlp().fit(X, Y, epochs=-1, verbose=0), ValueError,
     r"epochs must be an int >= 0, got -1"),
    ("fit epochs=2.5", lambda t: _mlp().fit(X, Y, epochs=2.5, verbose=0), TypeError,
     r"epochs must be an int >= 0, got 2\.5"),
    ("fit initial_epoch='1'", lambda t: _mlp().fit(X, Y, initial_epoch="1", verbose=0),
     TypeError, r"initial_epoch"),
    ("fit NaN targets", lambda t: _mlp().fit(X, np.full_like(Y, np.nan), verbose=0),
     ValueError, r"NaN"),
    ("Dropout rate=1.5", lambda t: layers.Dropout(1.5), ValueError, r"rate.*1\.5"),
    # --- integer (token id) inputs -----------------------------------------------------
    ("predict floats on an int model", lambda t: _int_model().predict(np.full((2, 3), 1.5)),
     ValueError, r"'ids'.*int32.*not whole numbers"),
    ("predict ids past input_dim", lambda t: _int_model().predict(np.full((2, 3), 12)),
     ValueError, r"ids must be in \[0, 10\).*\[12, 12\]"),
    ("predict negative ids", lambda t: _int_model().predict(np.full((2, 3), -1)),
     ValueError, r"ids must be in \[0, 10\)"),
    ("predict two arrays for one input", lambda t: _mlp().predict([X, X]), ValueError,
     r"1 input"),
]


def _unbuilt_sequential():
    m = Sequential([layers.Dense(2, activation="softmax")])
    m.compile("sgd", "categorical_crossentropy")
    return m


@pytest.mark.parametrize("action,expected,pattern", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_bad_input_gives_a_clear_error(tmp_path, action, expected, pattern):
    with pytest.raises(expected, match=pattern):
        action(str(tmp_path))


def test_the_catalogue_is_large_and_has_unique_names():
    assert len(CASES) >= 80
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_refused_set_weights_changes_nothing():
    x = Input(shape=(4,))
    m = Model(x, layers.Dense(2, name="b")(layers.Dense(3, name="a")(x)))
    before = m.get_weights()
    good_a = [np.full((4, 3), 7.0), np.full(3, 7.0)]
    with pytest.raises(ValueError, match="'b'.*shape"):
        m.set_weights(good_a + [np.zeros((2, 3)), np.zeros(2)])
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)  # layer 'a' was not written either


def test_set_weights_takes_nan_as_keras_does_with_a_warning():
    x = Input(shape=(4,))
    m = Model(x, layers.Dense(2, name="b")(x))
    with pytest.warns(RuntimeWarning, match="'b'.*'kernel' holds 8 NaN or infinite"):
        m.set_weights([np.full((4, 2), np.nan), np.zeros(2)])
    assert np.isnan(m.get_weights()[0]).all()
