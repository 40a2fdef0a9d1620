"""Recurrent layer kernels: a whole sequence per call, forward and backward through time.

One call runs every time step over the whole batch. The input projection of all steps is one
GEMM (``xs @ w``, ``xs`` the input in step order, time-major); each step then adds
``h @ u`` (a small GEMM into a preallocated slice) and applies the gate nonlinearities in one
fused pass. What backward needs (gate activations, cell states, hidden states, the rows
``[x_t | h_{t-1} | 1]`` of its weight-gradient GEMM) is written into time-major
``(steps, batch, ...)`` arrays, so every per-step slice is a contiguous 2-D block that BLAS
takes without a copy; in an inference program the states are two running buffers instead
(``_at``), by the same arithmetic. Backward walks the steps in reverse, writing the
pre-activation gradients of every step, then finishes with GEMMs over all steps at once: the
weight gradients (SimpleRNN, LSTM: one GEMM for ``dw``, ``du`` and the bias,
``_joint_weight_grads``; GRU: one each) and the input gradient. Nothing is allocated.

Conventions shared by every kernel here:

* ``x`` is ``(batch, time, features)`` in any strides; ``reverse`` processes time from the
  end (``go_backwards``); step ``s`` reads time ``T - 1 - s`` then.
* ``out`` is ``(batch, time, units)`` with ``return_sequences`` or ``(batch, 1, units)`` for the
  last state only; it may be row-strided (a slice of a Bidirectional concat). The sequence
  output of step ``s`` is written at index ``s`` (Keras' ``go_backwards`` order), or with
  ``flip`` at ``T - 1 - s`` (what Bidirectional does to its backward layer's sequence).
* ``ids`` is the mask source (Keras' ``mask = ids != 0``), ``(batch, time)`` in time order,
  or an array with 0 rows for no mask. As Keras 3: at a padded step a sample keeps its
  previous state (``h`` and ``c``), so its output there is the carried ``h`` (zeros before
  its first real step) and its last output the state after its last real step; backward
  passes the state's gradient straight through such a step (no gate, weight or input
  gradient from it). ``zero`` (Keras' ``zero_output_for_mask``, which Bidirectional sets
  for sequences) makes a sequence output 0 at padded steps instead.
* ``h0`` (and ``c0``) is the initial state ``(batch, units)`` given with ``initial_state=``,
  or an array with 0 rows for Keras' zeros; backward writes its gradient into ``dh0``
  (``dc0``), skipped when that has 0 rows.
* Backward starts from the gradient of the final state: the caller fills ``dhr`` (and LSTM's
  ``dc``) with the gradient of the last ``h`` (``c``) as a tensor of its own
  (``return_state=True``), or with zeros.
* Activation codes are ``nexec.kernels.activations``' linear, relu, sigmoid and tanh; their
  derivatives are taken from the activation's output.
* Gate order and weight layout are Keras': LSTM ``i, f, c, o``; GRU ``z, r, h`` with
  ``reset_after`` (bias rows: input, recurrent).
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from nexec.kernels.activations import RELU, SIGMOID, TANH
from nexec.kernels.cpu.activation import fast_sigmoid, fast_tanh
from nexec.kernels.cpu.fastmath32 import ONE32, sigmoid32, tanh32
from nexec.kernels.jit import kernel

# Gate math in the model's precision: float32 data runs fastmath32's sigmoid32/tanh32, float64
# data activation.py's fast_sigmoid/fast_tanh (so float64 results stay within 1e-10 of PyTorch).

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
           "gru_backward", "rnn_merge_forward", "rnn_merge_backward"]


def _sig(v):
    """Sigmoid in the precision of ``v`` (float32 or float64); njit code only."""
    raise NotImplementedError


def _tanh(v):
    """Tanh in the precision of ``v`` (float32 or float64); njit code only."""
    raise NotImplementedError


@overload(_sig)
def _sig_typed(v):
    if v == types.float32:
        return lambda v: sigmoid32(v)
    return lambda v: fast_sigmoid(v)


@overload(_tanh)
def _tanh_typed(v):
    if v == types.float32:
        return lambda v: tanh32(v)
    return lambda v: fast_tanh(v)


def _one(v):
    """1 in the precision of ``v``, so float32 arithmetic stays float32; njit code only."""
    raise NotImplementedError


@overload(_one)
def _one_typed(v):
    if v == types.float32:
        return lambda v: ONE32
    return lambda v: 1.0


@kernel
def _act(v, code):
    if code == SIGMOID:
        return _sig(v)
    if code == TANH:
        return _tanh(v)
    if code == RELU:
        return v if v > 0.0 else 0.0
    return v


@kernel
def _act_span(a, lo, hi, code):
    """a[lo:hi] = act(a[lo:hi]) in place; one branch-free loop per code, so it vectorizes."""
    if code == SIGMOID:
        for j in range(lo, hi):
            a[j] = _sig(a[j])
    elif code == TANH:
        for j in range(lo, hi):
            a[j] = _tanh(a[j])
    elif code == RELU:
        for j in range(lo, hi):
            a[j] = max(a[j], 0.0)


@kernel
def _add_rows(a, b, bias):
    """a += b (+ bias when it has entries), row by row over 2-D ``a`` and ``b``."""
    has_bias = bias.shape[0] > 0
    for i in range(a.shape[0]):
        ra, rb = a[i], b[i]
        if has_bias:
            for j in range(ra.shape[0]):
                ra[j] += rb[j] + bias[j]
        else:
            for j in range(ra.shape[0]):
                ra[j] += rb[j]


@kernel
def _dact(y, code):
    """Derivative of activation ``code`` from its output ``y``."""
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == TANH:
        return 1.0 - y * y
    if code == RELU:
        return 1.0 if y > 0.0 else 0.0
    return 1.0


@kernel
def _to_steps(x, reverse, xs):
    """xs[s] = x[:, t(s), :]: the input in step order, time-major."""
    n, t_len = x.shape[0], x.shape[1]
    for s in range(t_len):
        t = t_len - 1 - s if reverse else s
        for b in range(n):
            xs[s, b, :] = x[b, t, :]


@kernel
def _padded(ids, b, s, t_len, reverse):
    """Whether sample ``b`` is padding at step ``s`` (never without a mask)."""
    if ids.shape[0] == 0:
        return False
    t = t_len - 1 - s if reverse else s
    return ids[b, t] == 0


@kernel
def _copy_row(dst, src):
    """dst[:] = src (a loop: a slice assignment between views of one array may copy)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@kernel
def _zero_row(a):
    for j in range(a.shape[0]):
        a[j] = 0.0


@kernel
def _write_step(h, s, t_len, reverse, flip, ids, zero, out):
    """Step ``s``'s sequence output from its hidden state ``h`` (N, U), written while it is
    in cache (nothing for a last-state output); with ``zero``, 0 at padded steps."""
    if out.shape[1] == 1:
        return
    t = t_len - 1 - s if flip else s
    for b in range(out.shape[0]):
        if zero and _padded(ids, b, s, t_len, reverse):
            _zero_row(out[b, t])
        else:
            _copy_row(out[b, t], h[b])


@kernel
def _write_last(h, out):
    """The last-state output (N, 1, U) from the final hidden state ``h`` (N, U)."""
    if out.shape[1] == 1:
        for b in range(out.shape[0]):
            _copy_row(out[b, 0], h[b])


@kernel
def _at(keep, s, t_len):
    """Where step ``s`` reads its state and writes the next: ``(s, s + 1)`` in arrays kept
    for backward (``keep``); in an inference program's two running states, alternately
    ``(0, 1)`` and ``(1, 0)``, so that the last step writes index 1 (as the last index
    when kept: the final state is ``states[-1]`` either way). Two buffers, not one updated
    in place: Numba's loops vectorize only when what they read and write does not overlap
    (one buffer made the LSTM forward ~2x slower)."""
    if keep:
        return s, s + 1
    q = 1 - ((t_len - 1 - s) & 1)
    return 1 - q, q


@kernel
def _carry_plus_dout(dhr, dout, s, t_len, reverse, flip, ids, zero, dh):
    """dh = dhr (the gradient from step s + 1) + the output's gradient at step s (none at a
    padded step whose output is 0, ``zero``)."""
    dh[:, :] = dhr
    if dout.shape[1] == 1:
        if s == t_len - 1:
            dh += dout[:, 0, :]
        return
    t = t_len - 1 - s if flip else s
    dh += dout[:, t, :]
    if zero:
        for i in range(dh.shape[0]):
            if _padded(ids, i, s, t_len, reverse):
                _copy_row(dh[i], dhr[i])


@kernel
def _finish_backward(xs2d, hprev2d, dzx2d, dzr2d, w, dw, du, dxs, dxs2d, reverse, add_dx,
                     dx):
    """Weight gradients over all steps (one GEMM each) and the input gradient.

    ``dzx2d``/``dzr2d``: pre-activation gradients (steps * batch, gates * units) of the input
    projection and of the recurrent projection (the same array except for GRU).
    ``dx`` of shape (0, ...) skips the input gradient; ``add_dx`` adds into it.
    """
    np.dot(xs2d.T, dzx2d, dw)
    np.dot(hprev2d.T, dzr2d, du)
    _input_grad(dzx2d, w, dxs, dxs2d, reverse, add_dx, dx)


@kernel
def _joint_inputs(xs, has_bias, xh):
    """The forward's part of the joint rows ``xh`` (T, N, F + U + has_bias) of a training
    program: each row's ``x_t`` and, with a bias, its 1 (no rows in inference: nothing)."""
    if xh.shape[0] == 0:
        return
    f, last = xs.shape[2], xh.shape[2] - 1
    one = _one(xh[0, 0, 0])
    for s in range(xs.shape[0]):
        for b in range(xs.shape[1]):
            _copy_row(xh[s, b, :f], xs[s, b])
            if has_bias:
                xh[s, b, last] = one


@kernel
def _joint_state(h, s, xh, f):
    """Writes the state ``h`` (N, U) that step ``s`` starts from into the joint rows
    ``xh[s]`` (while it is in cache; nothing past the last step or in inference)."""
    if s >= xh.shape[0]:
        return
    units = h.shape[1]
    for b in range(h.shape[0]):
        _copy_row(xh[s, b, f:f + units], h[b])


@kernel
def _joint_weight_grads(xh2d, dz2d, dwu, dw, du, db):
    """dw, du (and db) from one GEMM over all steps: ``[x_t | h_{t-1} | 1]^T @ dz``.

    Two GEMMs (``xs.T @ dz``, ``hprev.T @ dz``) and a column sum read ``dz`` three times;
    one over the rows of ``xh`` (each the step's input, the state it started from and a 1
    when there is a bias) reads it once (LSTM(64), 32 features, batch 64, 50 steps, one
    thread: 1.9 -> 1.1 ms for the GEMMs). The forward writes those rows (``xh2d``: the 2-D
    view of its kept (T, N, F + U + has_bias) ``xh``) while they are in cache, so backward
    copies nothing; ``dwu`` (F + U + has_bias, G) is scratch; ``db`` has 0 entries for no
    bias.
    """
    f, units = dw.shape[0], du.shape[0]
    np.dot(xh2d.T, dz2d, dwu)
    for i in range(f):
        _copy_row(dw[i], dwu[i])
    for i in range(units):
        _copy_row(du[i], dwu[f + i])
    if db.shape[0] > 0:
        _copy_row(db, dwu[f + units])


@kernel
def _input_grad(dz2d, w, dxs, dxs2d, reverse, add_dx, dx):
    """The input gradient ``dz @ w.T`` in step order, written (or added, ``add_dx``) into
    ``dx``; skipped when ``dx`` has 0 rows."""
    if dx.shape[0] == 0:
        return
    np.dot(dz2d, w.T, dxs2d)
    n, t_len = dx.shape[0], dx.shape[1]
    for s in range(t_len):
        t = t_len - 1 - s if reverse else s
        for b in range(n):
            if add_dx:  # a loop: ``dx[b, t, :] += ...`` makes Numba allocate a temporary
                for j in range(dx.shape[2]):
                    dx[b, t, j] += dxs[s, b, j]
            else:
                dx[b, t, :] = dxs[s, b, :]


@kernel
def _column_sums(z2d, db):
    db[:] = 0.0
    for r in range(z2d.shape[0]):
        db += z2d[r]


@kernel
def _initial_state(given, state):
    """state = the given initial state (``initial_state=``), or 0 when it has no rows."""
    if given.shape[0] == 0:
        state[:, :] = 0.0
        return
    for i in range(state.shape[0]):
        _copy_row(state[i], given[i])


@kernel
def _state_gradient(d, d_state):
    """The gradient of an initial state, when one was given (``d_state`` has rows)."""
    for i in range(d_state.shape[0]):
        _copy_row(d_state[i], d[i])


@kernel
def _pass_padded(ids, s, t_len, reverse, dh, dhr):
    """At a padded step the state was carried: its gradient passes to the step before."""
    if ids.shape[0] == 0:
        return
    for i in range(dh.shape[0]):
        if _padded(ids, i, s, t_len, reverse):
            _copy_row(dhr[i], dh[i])


# --- SimpleRNN ---------------------------------------------------------------------------
@kernel
def _tanh_grad_row(h, dh, dz):
    """dz = dh (1 - h^2) in the data's precision (a float64 1.0 would widen float32 rows)."""
    one = _one(h[0])
    for j in range(h.shape[0]):
        dz[j] = dh[j] * (one - h[j] * h[j])


@kernel
def rnn_forward(x, w, u, b, act, reverse, flip, ids, zero, h0, xs, xs2d, z, z2d, hu, hs, xh,
                out):
    """h_s = act(x_t @ w + h_{s-1} @ u + b).

    Args:
        x: (N, T, F) input; w: (F, U); u: (U, U); b: (U,) or (0,) for no bias.
        act: Activation code.
        reverse, flip, ids, zero, h0: See the module docstring.
        xs, xs2d: (T, N, F) step-ordered input and its (T*N, F) view (kept for backward).
        z, z2d: (T, N, U) scratch for the input projection and its 2-D view.
        hu: (N, U) scratch for one step's ``h @ u``.
        hs: (T+1, N, U) hidden states, hs[0] the initial state (kept for backward); in an
            inference program (2, N, U), the running state only (:func:`_at`).
        xh: (T, N, F + U + has_bias) the rows ``[x_t | h_{t-1} | 1]`` of the backward's
            weight-gradient GEMM (:func:`_joint_weight_grads`), written here while they
            are in cache (kept); no rows in an inference program.
        out: (N, T, U) or (N, 1, U) output.
    """
    t_len, n, units = xs.shape[0], xs.shape[1], u.shape[0]
    keep = hs.shape[0] == t_len + 1  # (2, N, U) running states in inference (_at)
    _to_steps(x, reverse, xs)
    _joint_inputs(xs, b.shape[0] > 0, xh)
    np.dot(xs2d, w, z2d)
    _initial_state(h0, hs[_at(keep, 0, t_len)[0]])
    for s in range(t_len):
        p, q = _at(keep, s, t_len)
        _joint_state(hs[p], s, xh, xs.shape[2])
        np.dot(hs[p], u, hu)
        zs, h = z[s], hs[q]
        _add_rows(zs, hu, b)
        for i in range(n):
            if _padded(ids, i, s, t_len, reverse):
                _copy_row(h[i], hs[p, i])
                continue
            h[i, :] = zs[i, :]
            _act_span(h[i], 0, units, act)
        _write_step(h, s, t_len, reverse, flip, ids, zero, out)
    _write_last(hs[hs.shape[0] - 1], out)


@kernel
def rnn_backward(w, u, act, reverse, flip, ids, zero, dh0, hs, xh2d, dwu, dout, dz, dz2d, dh,
                 dhr, dxs, dxs2d, add_dx, dx, dw, du, db):
    """Gradients of :func:`rnn_forward` (``dw``, ``du``, ``db`` overwritten; ``dx`` written
    or, with ``add_dx``, added to).

    Args:
        hs: The forward's kept hidden states.
        xh2d: The (T*N, F + U + has_bias) view of the forward's kept joint rows ``xh``.
        dwu: (F + U + has_bias, U) scratch of :func:`_joint_weight_grads`.
        dout: Gradient of ``out``.
        dz, dz2d: (T, N, U) scratch: pre-activation gradients per step.
        dh, dhr: (N, U) scratch: the state's gradient, and its part from the next step;
            ``dhr`` comes in holding the final state's gradient (or zeros).
        dxs, dxs2d: (T, N, F) scratch for the step-ordered input gradient.
        dx: (N, T, F) input gradient; shape (0, T, F) skips it.
        db: (U,) or (0,).
    """
    t_len, n, units = dz.shape[0], dz.shape[1], u.shape[0]
    for s in range(t_len - 1, -1, -1):
        _carry_plus_dout(dhr, dout, s, t_len, reverse, flip, ids, zero, dh)
        h, dzs = hs[s + 1], dz[s]
        for i in range(n):
            if _padded(ids, i, s, t_len, reverse):
                _zero_row(dzs[i])
                continue
            if act == TANH:
                _tanh_grad_row(h[i], dh[i], dzs[i])
                continue
            for j in range(units):
                dzs[i, j] = dh[i, j] * _dact(h[i, j], act)
        np.dot(dzs, u.T, dhr)
        _pass_padded(ids, s, t_len, reverse, dh, dhr)
    _state_gradient(dhr, dh0)
    _joint_weight_grads(xh2d, dz2d, dwu, dw, du, db)
    _input_grad(dz2d, w, dxs, dxs2d, reverse, add_dx, dx)


# --- LSTM --------------------------------------------------------------------------------
@kernel
def _halves_of(u, uh):
    """uh[q] = u[:, q * G/2:(q + 1) * G/2], contiguous: the recurrent kernel as two GEMM
    operands."""
    half = uh.shape[2]
    for q in range(2):
        for i in range(u.shape[0]):
            _copy_row(uh[q, i], u[i, q * half:(q + 1) * half])


@kernel
def _lstm_cell_row(row, ha, hb, b, cp, c, t, h, units):
    """One batch row of one step with sigmoid gates and tanh: ``row`` (the input projection
    of gates i, f, c~, o) plus ``h @ u`` (gates i, f in ``ha``, c~, o in ``hb``) plus ``b``
    (pass zeros for no bias) becomes the activations; writes c, tanh(c) and h."""
    for j in range(units):
        ig = _sig(row[j] + ha[j] + b[j])
        fg = _sig(row[units + j] + ha[units + j] + b[units + j])
        cg = _tanh(row[2 * units + j] + hb[j] + b[2 * units + j])
        og = _sig(row[3 * units + j] + hb[units + j] + b[3 * units + j])
        row[j], row[units + j], row[2 * units + j], row[3 * units + j] = ig, fg, cg, og
        cv = fg * cp[j] + ig * cg
        tv = _tanh(cv)
        c[j], t[j], h[j] = cv, tv, og * tv


@kernel
def _lstm_cell_grad_row(row, cp, t, dh, dc, dz, da, db, units):
    """Backward of :func:`_lstm_cell_row` for one batch row: ``dz`` gets the gates'
    pre-activation gradients (and ``da`` those of gates i, f, ``db`` of c~, o: the
    operands of this step's ``dz @ u.T``), ``dc`` (in: from the next step) the previous
    cell's."""
    one = _one(row[0])
    for j in range(units):
        ig, fg = row[j], row[units + j]
        cg, og = row[2 * units + j], row[3 * units + j]
        tv, dhv = t[j], dh[j]
        dcv = dc[j] + dhv * og * (one - tv * tv)
        di = dcv * cg * (ig - ig * ig)
        df = dcv * cp[j] * (fg - fg * fg)
        dg = dcv * ig * (one - cg * cg)
        do = dhv * tv * (og - og * og)
        dz[j], dz[units + j], dz[2 * units + j], dz[3 * units + j] = di, df, dg, do
        da[j], da[units + j], db[j], db[units + j] = di, df, dg, do
        dc[j] = dcv * fg


@kernel
def _transposed_halves(u, uth):
    """uth[q] = u[:, q * G/2:(q + 1) * G/2].T, contiguous."""
    half = uth.shape[1]
    for q in range(2):
        for k in range(half):
            for j in range(u.shape[0]):
                uth[q, k, j] = u[j, q * half + k]


@kernel
def _recurrent_grad(dzh, uth, dhq, dhr):
    """dhr = dz @ u.T of one step as two GEMMs over half the gates each (``dzh``, ``uth``:
    the halves; ``dhq`` scratch): OpenBLAS's unpacked small-matrix path takes each (below
    1e6 multiply-adds), faster than one GEMM (LSTM(64), batch 64: 50 steps ~1.2 -> ~1.0 ms,
    one thread)."""
    np.dot(dzh[0], uth[0], dhr)
    np.dot(dzh[1], uth[1], dhq)
    for i in range(dhr.shape[0]):
        a, b = dhr[i], dhq[i]
        for j in range(a.shape[0]):
            a[j] += b[j]


@kernel
def lstm_forward(x, w, u, b, act, ract, reverse, flip, ids, zero, h0, c0, xs, xs2d, g, g2d,
                 hu, uh, cs, tc, hs, xh, out):
    """Keras' LSTM: i, f, o = ract(.), c~ = act(.), c = f c + i c~, h = o act(c).

    Args:
        x: (N, T, F); w: (F, 4U); u: (U, 4U); b: (4U,) or (0,).
        act, ract: Codes of ``activation`` and ``recurrent_activation``.
        reverse, flip, ids, zero, h0: See the module docstring.
        xs, xs2d: (T, N, F) step-ordered input and its 2-D view (kept for backward).
        g, g2d: (T, N, 4U) gate activations i, f, c~, o per step (kept) and its 2-D view.
        hu: (2, N, 2U) scratch: ``h @ u`` of one step, gates i, f and gates c~, o.
        uh: (2, U, 2U) scratch: ``u``'s halves. Two GEMMs of half the width each step are
            faster than one (OpenBLAS takes its unpacked small-matrix path below 1e6
            multiply-adds; LSTM(64), batch 64: 50 steps 1.4 -> 1.0 ms, one thread).
        cs: (T+1, N, U) cell states, cs[0] the initial one (kept); tc: (T, N, U) act(c) (kept).
        hs: (T+1, N, U) hidden states, hs[0] the initial state (kept).
            In an inference program ``cs`` and ``hs`` are (2, N, U), the running state
            (:func:`_at`), and ``tc`` (1, N, U): the same arithmetic, equal outputs bit for bit.
            Backward reads no ``hs`` (its states are in ``xh``): (2, N, U) in training too.
        xh: As :func:`rnn_forward` (kept).
        out: (N, T, U) or (N, 1, U).
    """
    t_len, n, units = xs.shape[0], xs.shape[1], u.shape[0]
    keep = cs.shape[0] == t_len + 1  # (2, N, U) running states in inference (_at)
    hkeep = hs.shape[0] == t_len + 1
    _to_steps(x, reverse, xs)
    _joint_inputs(xs, b.shape[0] > 0, xh)
    np.dot(xs2d, w, g2d)
    _initial_state(h0, hs[_at(hkeep, 0, t_len)[0]])
    _initial_state(c0, cs[_at(keep, 0, t_len)[0]])
    fused = act == TANH and ract == SIGMOID and b.shape[0] > 0  # Keras' default: one pass
    _halves_of(u, uh)
    half = uh.shape[2]
    for s in range(t_len):
        p, q = _at(keep, s, t_len)
        hp, hq = _at(hkeep, s, t_len)
        _joint_state(hs[hp], s, xh, xs.shape[2])
        np.dot(hs[hp], uh[0], hu[0])
        np.dot(hs[hp], uh[1], hu[1])
        gs, cp, c, t, h = g[s], cs[p], cs[q], tc[s if keep else 0], hs[hq]
        if not fused:
            _add_rows(gs[:, :half], hu[0], b[:half])
            _add_rows(gs[:, half:], hu[1], b[half:])
        for i in range(n):
            if _padded(ids, i, s, t_len, reverse):
                _copy_row(c[i], cp[i])
                _copy_row(h[i], hs[hp, i])
                continue
            if fused:
                _lstm_cell_row(gs[i], hu[0, i], hu[1, i], b, cp[i], c[i], t[i], h[i], units)
                continue
            row = gs[i]
            _act_span(row, 0, 2 * units, ract)
            _act_span(row, 2 * units, 3 * units, act)
            _act_span(row, 3 * units, 4 * units, ract)
            for j in range(units):
                cv = row[units + j] * cp[i, j] + row[j] * row[2 * units + j]
                c[i, j] = cv
                t[i, j] = cv
            _act_span(t[i], 0, units, act)
            for j in range(units):
                h[i, j] = row[3 * units + j] * t[i, j]
        _write_step(h, s, t_len, reverse, flip, ids, zero, out)
    _write_last(hs[hs.shape[0] - 1], out)


@kernel
def lstm_backward(w, u, act, ract, reverse, flip, ids, zero, dh0, dc0, g, cs, tc, xh2d, dwu,
                  dout, dz, dz2d, dzh, uth, dhq, dh, dhr, dc, dxs, dxs2d, add_dx, dx, dw, du, db):
    """Gradients of :func:`lstm_forward`; arguments as :func:`rnn_backward`, plus the kept
    ``g``, ``cs``, ``tc`` and ``dc`` (N, U) scratch for the cell state's gradient, coming in
    holding the final cell state's gradient (or zeros); ``dz`` is (T, N, 4U), ``dwu``
    (F + U + has_bias, 4U); scratch of :func:`_recurrent_grad`: ``dzh`` (2, N, 2U), ``uth``
    (2, 2U, U), ``dhq`` (N, U). It reads no hidden states: those it needs are in ``xh``."""
    t_len, n, units = g.shape[0], g.shape[1], u.shape[0]
    fused = act == TANH and ract == SIGMOID
    half = 2 * units
    _transposed_halves(u, uth)
    for s in range(t_len - 1, -1, -1):
        _carry_plus_dout(dhr, dout, s, t_len, reverse, flip, ids, zero, dh)
        gs, cp, t, dzs = g[s], cs[s], tc[s], dz[s]
        for i in range(n):
            if _padded(ids, i, s, t_len, reverse):  # dc passes through unchanged
                _zero_row(dzs[i])
                _zero_row(dzh[0, i])
                _zero_row(dzh[1, i])
                continue
            if fused:
                _lstm_cell_grad_row(gs[i], cp[i], t[i], dh[i], dc[i], dzs[i], dzh[0, i],
                                    dzh[1, i], units)
                continue
            for j in range(units):
                ig, fg = gs[i, j], gs[i, units + j]
                cg, og = gs[i, 2 * units + j], gs[i, 3 * units + j]
                tv = t[i, j]
                dcv = dc[i, j] + dh[i, j] * og * _dact(tv, act)
                dzs[i, j] = dcv * cg * _dact(ig, ract)
                dzs[i, units + j] = dcv * cp[i, j] * _dact(fg, ract)
                dzs[i, 2 * units + j] = dcv * ig * _dact(cg, act)
                dzs[i, 3 * units + j] = dh[i, j] * tv * _dact(og, ract)
                dc[i, j] = dcv * fg
            _copy_row(dzh[0, i], dzs[i, :half])
            _copy_row(dzh[1, i], dzs[i, half:])
        _recurrent_grad(dzh, uth, dhq, dhr)
        _pass_padded(ids, s, t_len, reverse, dh, dhr)
    _state_gradient(dhr, dh0)
    _state_gradient(dc, dc0)
    _joint_weight_grads(xh2d, dz2d, dwu, dw, du, db)
    _input_grad(dz2d, w, dxs, dxs2d, reverse, add_dx, dx)


# --- GRU (reset_after) -------------------------------------------------------------------
@kernel
def _gru_cell_row(row, hu, hp, rh, h, units):
    """One batch row of one step with sigmoid gates and tanh (Keras' default), in the data's
    precision: ``row`` (input projection z, r, h~ with its bias) and ``hu`` (``h @ u`` with
    the recurrent bias) become the activations; writes the recurrent candidate part and h."""
    one = _one(row[0])
    for j in range(units):
        zg = _sig(row[j] + hu[j])
        rg = _sig(row[units + j] + hu[units + j])
        rv = hu[2 * units + j]
        hh = _tanh(row[2 * units + j] + rg * rv)
        row[j], row[units + j], row[2 * units + j] = zg, rg, hh
        rh[j] = rv
        h[j] = zg * hp[j] + (one - zg) * hh


@kernel
def _gru_cell_grad_row(row, hp, rh, dh, dx, dr, units):
    """Backward of :func:`_gru_cell_row` for one batch row: ``dx``/``dr`` get the input and
    recurrent projections' pre-activation gradients, ``dh`` the direct path's part."""
    one = _one(row[0])
    for j in range(units):
        zg, rg, hh = row[j], row[units + j], row[2 * units + j]
        d = dh[j]
        dah = d * (one - zg) * (one - hh * hh)
        daz = d * (hp[j] - hh) * (zg - zg * zg)
        dar = dah * rh[j] * (rg - rg * rg)
        dx[j], dx[units + j], dx[2 * units + j] = daz, dar, dah
        dr[j], dr[units + j], dr[2 * units + j] = daz, dar, dah * rg
        dh[j] = d * zg


@kernel
def gru_forward(x, w, u, b, act, ract, reverse, flip, ids, zero, h0, xs, xs2d, g, g2d, hu, rh,
                hs, out):
    """Keras' GRU with ``reset_after=True`` (PyTorch's GRU):
    z, r = ract(x w + b_in + h u + b_rec), h~ = act(x w_h + b_in_h + r (h u_h + b_rec_h)),
    h' = z h + (1 - z) h~.

    Args:
        x: (N, T, F); w: (F, 3U); u: (U, 3U); b: (2, 3U) (input, recurrent) or (0, 3U).
        g, g2d: (T, N, 3U) gate activations z, r, h~ per step (kept) and its 2-D view.
        hu: (N, 3U) scratch.
        rh: (T, N, U) the recurrent candidate part ``h u_h + b_rec_h`` per step (kept).
        Others: as :func:`lstm_forward` (in inference ``rh`` (1, N, U), ``hs`` (2, N, U)).
    """
    t_len, n, units = xs.shape[0], xs.shape[1], u.shape[0]
    keep = hs.shape[0] == t_len + 1  # (2, N, U) running states in inference (_at)
    _to_steps(x, reverse, xs)
    np.dot(xs2d, w, g2d)
    _initial_state(h0, hs[_at(keep, 0, t_len)[0]])
    has_bias = b.shape[0] > 0
    fused = act == TANH and ract == SIGMOID  # Keras' default: one pass in the data's precision
    for s in range(t_len):
        p, q = _at(keep, s, t_len)
        np.dot(hs[p], u, hu)
        gs, hp, h, rhs = g[s], hs[p], hs[q], rh[s if keep else 0]
        if has_bias:
            for i in range(n):
                for j in range(3 * units):
                    gs[i, j] += b[0, j]
                    hu[i, j] += b[1, j]
        for i in range(n):
            if _padded(ids, i, s, t_len, reverse):
                _copy_row(h[i], hp[i])
                continue
            if fused:
                _gru_cell_row(gs[i], hu[i], hp[i], rhs[i], h[i], units)
                continue
            for j in range(units):
                zg = _act(gs[i, j] + hu[i, j], ract)
                rg = _act(gs[i, units + j] + hu[i, units + j], ract)
                rv = hu[i, 2 * units + j]
                hh = _act(gs[i, 2 * units + j] + rg * rv, act)
                gs[i, j], gs[i, units + j], gs[i, 2 * units + j] = zg, rg, hh
                rhs[i, j] = rv
                h[i, j] = zg * hp[i, j] + (1.0 - zg) * hh
        _write_step(h, s, t_len, reverse, flip, ids, zero, out)
    _write_last(hs[hs.shape[0] - 1], out)


@kernel
def gru_backward(w, u, act, ract, reverse, flip, ids, zero, dh0, xs, xs2d, g, rh, hs, hprev2d,
                 dout, dzx, dzx2d, dzr, dzr2d, dh, dhr, dxs, dxs2d, add_dx, dx, dw, du, db):
    """Gradients of :func:`gru_forward`; ``dzx``/``dzr`` (T, N, 3U) scratch: pre-activation
    gradients of the input and recurrent projections; ``db`` (2, 3U) or (0, 3U)."""
    t_len, n, units = xs.shape[0], xs.shape[1], u.shape[0]
    fused = act == TANH and ract == SIGMOID
    for s in range(t_len - 1, -1, -1):
        _carry_plus_dout(dhr, dout, s, t_len, reverse, flip, ids, zero, dh)
        gs, hp, rhs, dx_s, dr_s = g[s], hs[s], rh[s], dzx[s], dzr[s]
        for i in range(n):
            if _padded(ids, i, s, t_len, reverse):  # dh[i] stays: the direct path is all
                _zero_row(dx_s[i])
                _zero_row(dr_s[i])
                continue
            if fused:
                _gru_cell_grad_row(gs[i], hp[i], rhs[i], dh[i], dx_s[i], dr_s[i], units)
                continue
            for j in range(units):
                zg, rg, hh = gs[i, j], gs[i, units + j], gs[i, 2 * units + j]
                d = dh[i, j]
                dah = d * (1.0 - zg) * _dact(hh, act)
                daz = d * (hp[i, j] - hh) * _dact(zg, ract)
                dar = dah * rhs[i, j] * _dact(rg, ract)
                dx_s[i, j], dx_s[i, units + j], dx_s[i, 2 * units + j] = daz, dar, dah
                dr_s[i, j], dr_s[i, units + j], dr_s[i, 2 * units + j] = daz, dar, dah * rg
                dh[i, j] = d * zg  # the direct path to the previous state
        np.dot(dr_s, u.T, dhr)
        dhr += dh
    _state_gradient(dhr, dh0)
    _finish_backward(xs2d, hprev2d, dzx2d, dzr2d, w, dw, du, dxs, dxs2d, reverse, add_dx, dx)
    if db.shape[0] > 0:
        _column_sums(dzx2d, db[0])
        _column_sums(dzr2d, db[1])


# --- Bidirectional merges ----------------------------------------------------------------
@kernel
def rnn_merge_forward(yf, yb, mode, out):
    """out = yf + yb (mode 0), (yf + yb) / 2 (1) or yf * yb (2); (rows, units) arrays."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            a, c = yf[i, j], yb[i, j]
            out[i, j] = a + c if mode == 0 else (0.5 * (a + c) if mode == 1 else a * c)


@kernel
def rnn_merge_backward(yf, yb, dy, mode, dyf, dyb):
    """Gradients of :func:`rnn_merge_forward` with respect to ``yf`` and ``yb``."""
    for i in range(dy.shape[0]):
        for j in range(dy.shape[1]):
            d = dy[i, j]
            if mode == 0:
                dyf[i, j], dyb[i, j] = d, d
            elif mode == 1:
                dyf[i, j], dyb[i, j] = 0.5 * d, 0.5 * d
            else:
                dyf[i, j], dyb[i, j] = d * yb[i, j], d * yf[i, j]
