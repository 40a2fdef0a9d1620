"""Recurrent op kernels: SimpleRNN, LSTM, GRU, Bidirectional and TimeDistributed(Dense).

A recurrent op binds one kernel call per direction for its whole sequence. Everything the
cell keeps for backward (the input and the states each step starts from, SimpleRNN's and
LSTM's as the rows of their weight-gradient GEMM; gate activations, cell and hidden states)
is a ``saved`` workspace, time-major, so the op reads neither its input nor its output in
backward. An inference program (predict, evaluate) keeps none of it: its states are the
running ones (``_direction_workspaces``), by the same arithmetic, so its outputs equal a
training forward's bit for bit. Initial states (``initial_state=``) are the op's inputs 1
(``h``) and 2 (LSTM's ``c``); the kernels copy them into the first states and write their
gradients. A masked
input (``Embedding(mask_zero=True)`` upstream) reaches the kernels as its mask source, the
ids (``Call.mask``): a padded step carries the state, as Keras 3. With ``return_state=True``
the op has further outputs, the final ``h`` (and ``c``): forward copies them out of the saved
states, and backward starts the kernels' recurrence from their gradients (``dhr``, ``dc``;
zeros when a state feeds nothing). The kernel functions exist
on the CPU only so far: these op kernels are registered for the CPU
(``devices = ("cpu",)``), and a CUDA model with them gets the registry's "no kernel for
device 'cuda'" error.
"""
from __future__ import annotations

from typing import Any

from nexec.ops.base import BoundCall, Call, Workspace, empty_like_skip, rows, view_2d
from nexec.ops.builtin import BuiltinKernel, _bias, _part, _shard_slices
from nexec.plugins import registry

__all__ = ["OP_KERNEL_CLASSES", "SimpleRNNKernel", "LSTMKernel", "GRUKernel",
           "BidirectionalKernel", "TimeDistributedKernel"]

_MERGE_CODES = {"sum": 0, "ave": 1, "mul": 2}


def _code(name: str) -> int:
    return int(registry().activation(name).code)


def _cell(layer: Any) -> str:
    return {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}[type(layer).__name__]


def _direction_workspaces(cell: str, prefix: str, t: int, f: int, u: int, g: int, batch: int,
                          training: bool, bias: bool) -> dict[str, Workspace]:
    """What one direction keeps from forward to backward (``prefix``-named, so the two
    directions of a Bidirectional have their own). SimpleRNN and LSTM keep the rows
    ``[x_t | h_{t-1} | 1]`` of their joint weight-gradient GEMM (``xh``, written by forward;
    ``bias`` whether the layer has one) rather than the step-ordered input; LSTM's backward
    reads no hidden state, so its ``hs`` is the running state in training too. An inference
    program keeps no step for backward: ``hs`` and LSTM's ``cs`` hold the running state (two
    steps, read one and write the other), LSTM's ``tc`` and GRU's ``rh`` one step."""
    def kept(*shape: int) -> Workspace:
        return Workspace(tuple(shape), saved=training, phase="forward")

    def scratch(*shape: int) -> Workspace:
        return Workspace(tuple(shape), phase="forward")

    steps = t if training else 1  # states kept: every step for backward, or the running one
    joint = cell != "gru"  # backward's weight gradients read ``xh``, not ``xs``
    ws = {"xs": scratch(t, batch, f) if joint else kept(t, batch, f),
          "hs": scratch(2, batch, u) if cell == "lstm" else kept(steps + 1, batch, u)}
    if cell == "rnn":
        ws["g"] = Workspace((t, batch, u), phase="forward")  # the input projection only
    else:
        ws["g"] = kept(t, batch, g)
    if cell == "lstm":
        ws["cs"] = kept(steps + 1, batch, u)
        ws["tc"] = kept(t if training else 1, batch, u)
    if cell == "gru":
        ws["rh"] = kept(t if training else 1, batch, u)
    elif training:
        rows_ = f + u + int(bias)
        ws["xh"] = kept(t, batch, rows_)
        ws["dwu"] = Workspace((rows_, g), phase="backward")
    return {prefix + k: v for k, v in ws.items()}


def _shared_workspaces(cell: str, t: int, f: int, u: int, g: int, batch: int,
                       training: bool) -> dict[str, Workspace]:
    """Per-step scratch of forward and the backward scratch; directions run one after the
    other, so they share these."""
    ws = {"hu": Workspace((batch, g), phase="forward")}
    if cell == "lstm":  # ``h @ u`` as two GEMMs of half the gates (lstm_forward)
        ws = {"hu": Workspace((2, batch, g // 2), phase="forward"),
              "uh": Workspace((2, u, g // 2), phase="forward")}
    if not training:
        return ws
    back = {"dh": (batch, u), "dhr": (batch, u), "dxs": (t, batch, f)}
    if cell == "gru":
        back.update({"dzx": (t, batch, g), "dzr": (t, batch, g)})
    else:
        back["dz"] = (t, batch, g)
    if cell == "lstm":  # dc; dz @ u.T of a step as two GEMMs (lstm_backward)
        back.update({"dc": (batch, u), "dzh": (2, batch, g // 2), "uth": (2, g // 2, u),
                     "dhq": (batch, u)})
    ws.update({k: Workspace(s, phase="backward") for k, s in back.items()})
    return ws


def _as_3d(a: Any) -> Any:
    """A layer output (or its gradient) as (batch, steps, units): one step for a last state."""
    return a if a.ndim == 3 else a[:, None, :]


def _ids(call: Call) -> Any:
    """The mask source of the op's input, ``(batch, time)`` (Keras' mask is ``ids != 0``),
    or an array with no rows: no mask, every step is real."""
    if call.mask is not None:
        return call.mask
    return call.device.zeros((0, 0), "int32")


def _flat(a: Any) -> Any:
    return view_2d(a, a.shape[0] * a.shape[1], a.shape[2])


class _Direction:
    """One recurrent pass: which layer's settings, parameters and workspaces it uses."""

    def __init__(self, layer: Any, prefix: str, pname: str, flip: bool,
                 zero: bool = False, first_state: int = 1) -> None:
        self.layer, self.prefix, self.pname, self.flip = layer, prefix, pname, flip
        #: Which op input holds this direction's first initial state (Bidirectional's
        #: backward direction: after the forward layer's states).
        self.first_state = first_state
        self.cell = _cell(layer)
        #: Keras' ``zero_output_for_mask``: a sequence output is 0 at padded steps (what
        #: Bidirectional asks of both directions when it returns sequences).
        self.zero = zero

    def _states(self, call: Call, arrays: list) -> tuple:
        """The initial states (``h``, and ``c`` for LSTM) among ``arrays`` (the op's inputs,
        or their gradients), each ``(batch, units)``; an array with no rows for one not
        given (Keras' zeros) or needing no gradient."""
        n = 2 if self.cell == "lstm" else 1
        given = list(arrays[self.first_state:self.first_state + n])
        empty = call.device.zeros((0, self.layer.units), call.output.dtype)
        return tuple(a if a is not None else empty for a in given + [None] * (n - len(given)))

    def _param(self, table: dict, name: str) -> Any:
        return table[self.pname + name]

    def _b(self, call: Call, grads: bool = False) -> Any:
        table = call.d_params if grads else call.params
        if self.pname + "bias" in table:
            return table[self.pname + "bias"]
        shape = (0, 3 * self.layer.units) if self.cell == "gru" else (0,)
        return call.device.zeros(shape, call.output.dtype)

    def _tables(self, call: Call, part: str) -> tuple[dict, dict]:
        """This direction's workspaces and the shared scratch of batch shard ``part`` (its
        name prefix; "" for an op that runs whole)."""
        own = part + self.prefix
        return ({n[len(own):]: a for n, a in call.workspace.items() if n.startswith(own)},
                {n[len(part):]: a for n, a in call.workspace.items() if n.startswith(part)})

    def forward(self, k: Any, call: Call, x: Any, out: Any, part: str = "",
                sl: slice = slice(None)) -> BoundCall:
        """The forward call over batch rows ``sl`` of ``x`` and ``out`` (the shard whose
        workspaces are prefixed ``part``)."""
        ws, sh = self._tables(call, part)
        w, u = self._param(call.params, "kernel"), self._param(call.params, "recurrent_kernel")
        lay = self.layer
        head: tuple = (_part(x, sl), w, u, self._b(call), _code(lay.cell_activation))
        if self.cell != "rnn":
            head += (_code(lay.recurrent_activation),)
        states = tuple(_part(a, sl) for a in self._states(call, call.inputs))
        common = (bool(lay.go_backwards), self.flip, _part(_ids(call), sl), self.zero,
                  *states, ws["xs"], _flat(ws["xs"]), ws["g"], _flat(ws["g"]), sh["hu"])
        out = _part(out, sl)
        # The joint rows of backward's weight-gradient GEMM; none in inference (or GRU).
        xh = ws["xh"] if "xh" in ws else call.device.zeros((0, 1, 1), call.output.dtype)
        if self.cell == "rnn":
            return k.rnn_forward, head + common + (ws["hs"], xh, out)
        if self.cell == "lstm":
            return k.lstm_forward, head + common + (sh["uh"], ws["cs"], ws["tc"], ws["hs"],
                                                    xh, out)
        return k.gru_forward, head + common + (ws["rh"], ws["hs"], out)

    def final_states(self, k: Any, call: Call, outs: list, part: str = "",
                     sl: slice = slice(None)) -> list[BoundCall]:
        """Copies the final ``h`` (and ``c``) of batch rows ``sl`` into ``outs``, the op's
        state outputs (shard ``part``, as :meth:`forward`)."""
        ws, _ = self._tables(call, part)
        saved = [ws["hs"], ws["cs"]] if self.cell == "lstm" else [ws["hs"]]
        return [(k.copy_into, (_part(out, sl), s[s.shape[0] - 1]))
                for out, s in zip(outs, saved)]

    def seed(self, k: Any, call: Call, d_states: list, part: str = "",
             sl: slice = slice(None)) -> list[BoundCall]:
        """Fills the kernel's ``dhr`` (and ``dc``) with the final states' gradients (rows
        ``sl``), the recurrence's starting point; zeros for a state with none (not returned,
        or unread)."""
        _, sh = self._tables(call, part)
        starts = [sh["dhr"], sh["dc"]] if self.cell == "lstm" else [sh["dhr"]]
        d_states = list(d_states) + [None] * (len(starts) - len(d_states))
        return [(k.fill_zero, (a,)) if d is None else (k.copy_into, (a, _part(d, sl)))
                for a, d in zip(starts, d_states)]

    def backward(self, k: Any, call: Call, dout: Any, dx: Any, add_dx: bool, part: str = "",
                 sl: slice = slice(None), grads: tuple | None = None) -> BoundCall:
        """The backward call over batch rows ``sl`` (shard ``part``, as :meth:`forward`);
        ``grads``: where to write (kernel, recurrent kernel, bias) gradients, the layer's own
        when None."""
        ws, sh = self._tables(call, part)
        dout, dx = _part(dout, sl), _part(dx, sl)
        lay = self.layer
        w, u = self._param(call.params, "kernel"), self._param(call.params, "recurrent_kernel")
        head: tuple = (w, u, _code(lay.cell_activation))
        if self.cell != "rnn":
            head += (_code(lay.recurrent_activation),)
        d_states = tuple(_part(a, sl) for a in self._states(call, call.d_inputs))
        head += (bool(lay.go_backwards), self.flip, _part(_ids(call), sl), self.zero,
                 *d_states)
        if grads is None:
            grads = (self._param(call.d_params, "kernel"),
                     self._param(call.d_params, "recurrent_kernel"), self._b(call, grads=True))
        tail = (sh["dxs"], _flat(sh["dxs"]), add_dx, dx, *grads)
        if self.cell == "rnn":
            return k.rnn_backward, head + (ws["hs"], _flat(ws["xh"]), ws["dwu"], dout,
                                           sh["dz"], _flat(sh["dz"]), sh["dh"], sh["dhr"]) + tail
        if self.cell == "lstm":
            return k.lstm_backward, head + (ws["g"], ws["cs"], ws["tc"], _flat(ws["xh"]),
                                            ws["dwu"], dout, sh["dz"], _flat(sh["dz"]),
                                            sh["dzh"], sh["uth"], sh["dhq"], sh["dh"],
                                            sh["dhr"], sh["dc"]) + tail
        hprev = _flat(ws["hs"][:ws["g"].shape[0]])
        head += (ws["xs"], _flat(ws["xs"]))
        return k.gru_backward, head + (ws["g"], ws["rh"], ws["hs"], hprev, dout, sh["dzx"],
                                       _flat(sh["dzx"]), sh["dzr"], _flat(sh["dzr"]),
                                       sh["dh"], sh["dhr"]) + tail


def _one_blas_thread(guard: Any, fn: Any, args: tuple) -> None:
    """Runs ``fn(*args)`` with BLAS held at one thread (``guard`` is the device's
    ``step_guard``). A recurrence makes one small GEMM per step, one after the other; BLAS
    threads cost far more there than they give (LSTM(64) over 50 steps, batch 64, on a busy
    2-core machine: forward 541 ms with two OpenBLAS threads, 61 ms with one)."""
    with guard(True):
        fn(*args)


def _held(call: Call, bound: BoundCall) -> BoundCall:
    return _one_blas_thread, (call.device.step_guard, *bound)


def _dx(call: Call) -> Any:
    x = call.inputs[0]
    return call.d_inputs[0] if call.d_inputs[0] is not None else empty_like_skip(x)


#: Below this many forward flops per batch shard a recurrent op runs whole: a shard costs a
#: thread hand-off per call (the recurrence itself has none per step).
_MIN_SHARD_FLOPS = 8_000_000


class _RecurrentKernel(BuiltinKernel):
    """SimpleRNN, LSTM, GRU: one kernel call for the whole sequence, each way.

    With more than one thread (``nexec.set_num_threads``) the batch is split into shards,
    one per thread, each running the whole recurrence over its rows with its own workspaces
    (prefixed ``s<i>_``) and BLAS at one thread: batch rows are independent, so the shards
    never wait on each other within a sequence. Shards after the first write partial weight
    gradients that are then added in shard order (deterministic for a thread count). Before,
    a second thread had nothing to do in a recurrence: each step's GEMM is too small to share
    (two-thread BLAS there was ~9x slower), so the op ran on one thread; each shard takes
    about half the CPU time of the whole (docs/performance.md, LSTM benchmark). The final
    states (``return_state``) are copied, and their gradients seeded, per shard.
    """

    saves_inputs = False  # the step-ordered copy of the input is a saved workspace
    saves_output = False  # the hidden states are
    #: Kernel functions exist on the CPU only (``nexec/kernels/cpu/recurrent.py``).
    devices = ("cpu",)

    def _shards(self, layer: Any, t: int, f: int, batch: int) -> int:
        g = layer.gates * layer.units
        flops = 2 * batch * t * (f + layer.units) * g
        return max(1, min(self.dev.threads(), batch, flops // _MIN_SHARD_FLOPS))

    def _split(self, call: Call) -> list[slice]:
        x = call.inputs[0]
        n, t, f = x.shape
        return [s for s, _ in _shard_slices(n, self._shards(call.layer, t, f, n), 1)]

    def workspaces(self, layer: Any, in_shapes: list[tuple], out_shape: tuple, batch: int,
                   training: bool, strided_output: bool = False) -> dict[str, Workspace]:
        t, f = in_shapes[0]
        cell, u = _cell(layer), layer.units
        g = layer.gates * u
        shards = self._shards(layer, t, f, batch)
        if shards == 1:
            ws = {**_direction_workspaces(cell, "", t, f, u, g, batch, training,
                                          layer.use_bias),
                  **_shared_workspaces(cell, t, f, u, g, batch, training)}
        else:
            ws = {}
            for i, (s, _) in enumerate(_shard_slices(batch, shards, 1)):
                part, n = f"s{i}_", s.stop - s.start
                ws.update(_direction_workspaces(cell, part, t, f, u, g, n, training,
                                                layer.use_bias))
                ws.update({part + k: v
                           for k, v in _shared_workspaces(cell, t, f, u, g, n, training).items()})
            if training:
                ws["dw_parts"] = Workspace((shards - 1, f, g), phase="backward")
                ws["du_parts"] = Workspace((shards - 1, u, g), phase="backward")
                if layer.use_bias:
                    bias = next(p.shape for p in layer.param_specs(in_shapes)
                                if p.name == "bias")
                    ws["db_parts"] = Workspace((shards - 1, *bias), phase="backward")
        if training and layer.return_state:  # zeros for an output nothing reads
            ws["dout0"] = Workspace((batch, *out_shape), phase="backward")
        return ws

    def forward(self, call: Call) -> list[BoundCall]:
        d = _Direction(call.layer, "", "", False)
        x, out, states = call.inputs[0], _as_3d(call.output), call.outputs[1:]
        parts = self._split(call)
        if len(parts) == 1:
            return [_held(call, d.forward(self.k, call, x, out))] + \
                d.final_states(self.k, call, states)
        return self.dev.parallel([d.forward(self.k, call, x, out, f"s{i}_", s)
                                  for i, s in enumerate(parts)]) + \
            [c for i, s in enumerate(parts)
             for c in d.final_states(self.k, call, states, f"s{i}_", s)]

    def backward(self, call: Call) -> list[BoundCall]:
        d = _Direction(call.layer, "", "", False)
        calls, dout = [], call.d_output
        if dout is None:  # only the states are read (``_, h, c = LSTM(...)``)
            dout = call.workspace["dout0"]
            calls.append((self.k.fill_zero, (rows(dout),)))
        dout, dx, d_states = _as_3d(dout), _dx(call), call.d_outputs[1:]
        parts = self._split(call)
        if len(parts) == 1:
            return calls + d.seed(self.k, call, d_states) + \
                [_held(call, d.backward(self.k, call, dout, dx, False))]
        ws, acc = call.workspace, self.k.accumulate
        own = (call.d_params["kernel"], call.d_params["recurrent_kernel"], d._b(call, True))
        shards, sums = [], []
        for i, s in enumerate(parts):
            calls += d.seed(self.k, call, d_states, f"s{i}_", s)
            grads = None
            if i > 0:
                grads = (ws["dw_parts"][i - 1], ws["du_parts"][i - 1],
                         ws["db_parts"][i - 1] if "db_parts" in ws else own[2])
                sums += [(acc, (rows(a), rows(b))) for a, b in zip(own, grads)
                         if a.shape[0] > 0]
            shards.append(d.backward(self.k, call, dout, dx, False, f"s{i}_", s, grads))
        return calls + self.dev.parallel(shards) + sums


class SimpleRNNKernel(_RecurrentKernel):
    layer_type = "SimpleRNN"


class LSTMKernel(_RecurrentKernel):
    layer_type = "LSTM"


class GRUKernel(_RecurrentKernel):
    layer_type = "GRU"


class BidirectionalKernel(BuiltinKernel):
    """Two directions over the same input; with ``concat`` each writes its half of the output
    (and reads its half of the output's gradient) in place, otherwise into saved workspaces
    that a merge kernel combines."""

    layer_type = "Bidirectional"
    saves_inputs = False
    saves_output = False
    devices = ("cpu",)

    def _directions(self, layer: Any) -> tuple[_Direction, _Direction]:
        seq = layer.return_sequences
        return (_Direction(layer.forward_layer, "f_", "forward_", False, seq),
                _Direction(layer.backward_layer, "b_", "backward_", seq, seq,
                           first_state=1 + layer.forward_layer.n_states))

    def workspaces(self, layer: Any, in_shapes: list[tuple], out_shape: tuple, batch: int,
                   training: bool, strided_output: bool = False) -> dict[str, Workspace]:
        t, f = in_shapes[0]
        ws: dict[str, Workspace] = {}
        for prefix, lay in (("f_", layer.forward_layer), ("b_", layer.backward_layer)):
            cell, u = _cell(lay), lay.units
            ws.update(_direction_workspaces(cell, prefix, t, f, u, lay.gates * u, batch,
                                            training, lay.use_bias))
        fl = layer.forward_layer
        cell, u = _cell(fl), fl.units
        ws.update(_shared_workspaces(cell, t, f, u, fl.gates * u, batch, training))
        if training and layer.return_state:  # zeros for an output nothing reads
            ws["dout0"] = Workspace((batch, *out_shape), phase="backward")
        if layer.merge_mode != "concat":
            steps = t if layer.return_sequences else 1
            for name in ("yf", "yb"):
                ws[name] = Workspace((batch, steps, u), saved=training, phase="forward")
            if training:
                for name in ("dyf", "dyb"):
                    ws[name] = Workspace((batch, steps, u), phase="backward")
        return ws

    def _halves(self, call: Call, whole: Any) -> tuple[Any, Any]:
        u = call.layer.forward_layer.units
        w = _as_3d(whole)
        return w[:, :, :u], w[:, :, u:]

    def forward(self, call: Call) -> list[BoundCall]:
        fwd, bwd = self._directions(call.layer)
        x = call.inputs[0]
        if call.layer.merge_mode == "concat":
            of, ob = self._halves(call, call.output)
        else:
            of, ob = call.workspace["yf"], call.workspace["yb"]
        calls = [_held(call, fwd.forward(self.k, call, x, of)),
                 _held(call, bwd.forward(self.k, call, x, ob))]
        if call.layer.merge_mode != "concat":
            calls.append((self.k.rnn_merge_forward, (rows(of), rows(ob),
                                                     _MERGE_CODES[call.layer.merge_mode],
                                                     rows(_as_3d(call.output)))))
        n = len(call.outputs[1:]) // 2  # states per direction (return_state)
        return calls + fwd.final_states(self.k, call, call.outputs[1:1 + n]) + \
            bwd.final_states(self.k, call, call.outputs[1 + n:])

    def backward(self, call: Call) -> list[BoundCall]:
        fwd, bwd = self._directions(call.layer)
        calls: list[BoundCall] = []
        d_output = call.d_output
        if d_output is None:  # only the states are read
            d_output = call.workspace["dout0"]
            calls.append((self.k.fill_zero, (rows(d_output),)))
        if call.layer.merge_mode == "concat":
            df, db = self._halves(call, d_output)
        else:
            ws = call.workspace
            df, db = ws["dyf"], ws["dyb"]
            calls.append((self.k.rnn_merge_backward, (
                rows(ws["yf"]), rows(ws["yb"]), rows(_as_3d(d_output)),
                _MERGE_CODES[call.layer.merge_mode], rows(df), rows(db))))
        dx = _dx(call)
        n = len(call.d_outputs[1:]) // 2  # states per direction (return_state)
        calls += [*fwd.seed(self.k, call, call.d_outputs[1:1 + n]),
                  _held(call, fwd.backward(self.k, call, df, dx, False)),
                  *bwd.seed(self.k, call, call.d_outputs[1 + n:]),
                  _held(call, bwd.backward(self.k, call, db, dx, True))]
        return calls


class TimeDistributedKernel(BuiltinKernel):
    """Dense on every step: the Dense kernels over (batch * steps, features) rows."""

    layer_type = "TimeDistributed"
    fuses_activation = True

    def workspaces(self, layer: Any, in_shapes: list[tuple], out_shape: tuple, batch: int,
                   training: bool, strided_output: bool = False) -> dict[str, Workspace]:
        return {"dz": Workspace((batch, *out_shape), phase="backward")} if training else {}

    def forward(self, call: Call) -> list[BoundCall]:
        out = rows(call.output)
        return [(self.k.dense_forward, (rows(call.inputs[0]), call.params["kernel"],
                                        _bias(call), call.activation, out, out))]

    def backward(self, call: Call) -> list[BoundCall]:
        x = rows(call.inputs[0])
        dx = rows(call.d_inputs[0]) if call.d_inputs[0] is not None else empty_like_skip(x)
        return [(self.k.dense_backward, (x, call.params["kernel"], rows(call.output),
                                         rows(call.d_output), call.activation,
                                         rows(call.workspace["dz"]), dx,
                                         call.d_params["kernel"], _bias(call, grads=True)))]


OP_KERNEL_CLASSES = (SimpleRNNKernel, LSTMKernel, GRUKernel, BidirectionalKernel,
                     TimeDistributedKernel)
