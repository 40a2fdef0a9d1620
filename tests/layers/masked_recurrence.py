"""Keras 3's masked recurrence step by step in PyTorch float64, the reference of the masked
and return_state tests (tests/layers/test_masking.py, test_return_state.py)."""
from __future__ import annotations

import numpy as np
import torch


def masked_torch(kind: str, m, x, keep: np.ndarray, go_backwards: bool,  # noqa: ANN001, ANN201
                 zero: bool = False, state: list | None = None):
    """Runs torch cell ``m`` (``nn.RNN``/``LSTM``/``GRU``, batch first) over ``x`` with Keras'
    rules: a padded step (``keep`` False) carries h and c and outputs that state, or 0 with
    ``zero`` (``zero_output_for_mask``, which Bidirectional sets when it returns sequences).
    ``state``: the initial ``[h]`` (``[h, c]`` for LSTM), each ``(batch, units)``; zeros when
    None. Returns the outputs in processing order and the final states ``[h]`` (``[h, c]``
    for LSTM)."""
    n, units = x.shape[0], m.hidden_size
    h = torch.zeros(1, n, units, dtype=torch.float64)
    c = torch.zeros(1, n, units, dtype=torch.float64)
    if state is not None:
        h = state[0][None]
        c = state[1][None] if kind == "LSTM" else c
    outs = []
    for t in (range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])):
        k = torch.tensor(keep[:, t])[None, :, None]
        if kind == "LSTM":
            _, (hn, cn) = m(x[:, t:t + 1], (h, c))
            c = torch.where(k, cn, c)
        else:
            _, hn = m(x[:, t:t + 1], h)
        h = torch.where(k, hn, h)
        outs.append(torch.where(k[0], h[0], torch.zeros_like(h[0])) if zero else h[0])
    return torch.stack(outs, 1), [h[0], c[0]] if kind == "LSTM" else [h[0]]
