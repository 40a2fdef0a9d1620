"""Window geometry of convolutions and poolings (Keras ``"valid"``/``"same"``), once.

Layers (output shapes), op binders (workspace sizes), the CPU and CUDA kernels and plugins
(pooling) all need the same arithmetic: how long an output axis is and how much zero padding
goes before it. It lives here, in plain Python with no device or Numba import, so planning a
model never compiles a kernel and a plugin can import it like any other public helper.

The rules are TensorFlow's. ``"valid"``: no padding, ``out = (in - k) // s + 1``. ``"same"``:
``out = ceil(in / s)``, ``pad_total = max((out - 1) * s + k - in, 0)``, of which
``pad_total // 2`` goes before (top/left) and the odd extra row or column after.
"""
from __future__ import annotations

__all__ = [
    "PADDINGS",
    "COLS_BLOCK",
    "output_length",
    "padding_before",
    "window_geometry_2d",
    "conv2d_geometry",
    "is_pointwise",
    "pointwise_block",
    "pointwise_rows",
    "conv2d_workspace_shapes",
    "block_elements",
    "conv1d_geometry",
    "transpose_output_length",
    "conv2d_transpose_geometry",
]

PADDINGS = ("valid", "same")
COLS_BLOCK = 1 << 20  # elements of a CPU column-matrix block (4 MiB float32; docs/performance.md)
POINTWISE_BLOCK = 1 << 15  # elements of x and out per block of a sharded 1x1 convolution


def block_elements(shards: int = 1) -> int:
    """Elements of one shard's column-matrix (or Winograd tile) block when ``shards`` run at
    once: :data:`COLS_BLOCK` split between them. Why: the shards share the last-level cache;
    on a 2-core Zen 3 two shards with a whole block each ran the benchmark CNN's training
    step 11% slower than with half a block each (ResNet-18's within the noise), while one
    shard alone is faster with the whole block (docs/performance.md, round 12)."""
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be an integer >= 1; got {shards!r}")
    return COLS_BLOCK // shards


def _mode(padding: str) -> str:
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return mode


def output_length(size: int, kernel: int, stride: int, padding: str) -> int:
    """Length of one output axis: ``ceil(size / stride)`` for same, else of the valid part.

    Args:
        size: Input length along the axis.
        kernel: Window (kernel or pool) length.
        stride: Step between windows.
        padding: ``"valid"`` or ``"same"`` (any case).

    Returns:
        The output length; ``<= 0`` when a ``"valid"`` window does not fit (the caller says
        what does not fit).

    Raises:
        ValueError: unknown padding.
    """
    if _mode(padding) == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def padding_before(size: int, kernel: int, stride: int, padding: str) -> int:
    """Zero padding before one axis (top or left): ``pad_total // 2`` for same, else 0.

    Raises:
        ValueError: unknown padding.
    """
    if _mode(padding) == "valid":
        return 0
    out = -(-size // stride)
    return max((out - 1) * stride + kernel - size, 0) // 2


def window_geometry_2d(h: int, w: int, kh: int, kw: int, sh: int, sw: int,
                       padding: str) -> tuple[int, int, int, int]:
    """Output size and top/left padding of a 2-D window op, without checking that it fits.

    Returns:
        ``(ho, wo, pad_top, pad_left)``; ``ho``/``wo`` may be ``<= 0`` when a ``"valid"``
        window is larger than the input.

    Raises:
        ValueError: unknown padding.
    """
    return (output_length(h, kh, sh, padding), output_length(w, kw, sw, padding),
            padding_before(h, kh, sh, padding), padding_before(w, kw, sw, padding))


def conv2d_geometry(h: int, w: int, kh: int, kw: int, sh: int, sw: int,
                    padding: str) -> tuple[int, int, int, int]:
    """Output size and top/left padding of a Keras/TF 2-D convolution, checked.

    Returns:
        ``(ho, wo, pad_top, pad_left)``.

    Raises:
        ValueError: unknown padding, non-positive sizes, or a "valid" kernel larger than the
            input.
    """
    if min(h, w, kh, kw, sh, sw) <= 0:
        raise ValueError(
            f"conv2d sizes must be positive, got input {h}x{w}, kernel {kh}x{kw}, "
            f"strides {sh}x{sw}")
    ho, wo, pt, pl = window_geometry_2d(h, w, kh, kw, sh, sw, padding)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"conv2d 'valid': kernel {kh}x{kw} larger than input {h}x{w}")
    return ho, wo, pt, pl


def is_pointwise(h: int, w: int, kh: int, kw: int, ho: int, wo: int, sh: int, sw: int,
                 pt: int, pl: int) -> bool:
    """Whether a convolution is 1x1, stride 1 and unpadded.

    Then ``x`` viewed as ``(N*H*W, Cin)`` already is its column matrix and no im2col is
    needed. (Keras padding of a 1x1 stride-1 convolution is always 0.)
    """
    return (kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
            and ho == h and wo == w)


def pointwise_block(cin: int, f: int) -> int:
    """Rows per block for a 1x1 convolution's input and output rows to hold about
    :data:`POINTWISE_BLOCK` elements together; a multiple of the epilogues' 256 rows."""
    return max(1, POINTWISE_BLOCK // (256 * (cin + f))) * 256


def pointwise_rows(cin: int, f: int, shards: int) -> int:
    """Rows per block of a 1x1 convolution's GEMM and epilogue on the CPU (0: all at once).

    In blocks (:func:`pointwise_block`) the epilogue finds the GEMM's output still in cache.
    That pays only in shards (on all BLAS threads blocks were slower), for outputs of at
    least 16 channels (narrower ones stay in cache whole) and for blocks of at least 4 rows
    per input channel (each block packs the weights again): measured by
    ``benchmarks/pointwise_blocks.py``, docs/performance.md round 14.
    """
    block = pointwise_block(cin, f)
    if shards <= 1 or f < 16 or block < 4 * cin:
        return 0
    return block


def conv2d_workspace_shapes(n: int, h: int, w: int, cin: int, kh: int, kw: int, f: int,
                            ho: int, wo: int, sh: int, sw: int, training: bool,
                            tiled: bool = False, shards: int = 1
                            ) -> dict[str, tuple[int, ...]]:
    """Shapes of the C-contiguous workspaces (same dtype as ``x``) the conv kernels take.

    * ``cols`` ``(R, KH*KW*Cin)``: the column matrix, used by forward and (again, from
      scratch) by backward. A 1x1 stride-1 unpadded convolution has none: ``(R, 0)``, R its
      rows per block (:func:`pointwise_rows`; 0, all at once, unless ``tiled`` and sharded).
      ``tiled=False``: all R = N*Ho*Wo rows at once (what the CUDA kernels need).
      ``tiled=True`` (CPU): a block of about :func:`block_elements` (``shards``: how many
      such blocks are in use at once) elements, so that each
      block stays in cache between its im2col, GEMMs and col2im, plus in training F rows:
      every block's weight-gradient GEMM reads and writes all of ``dw`` (KH*KW*Cin, F), so
      longer blocks pay that less often (without them ResNet-18's 4x4x256 3x3 layer's
      backward took two blocks instead of one, 1.7x the time); at most N*Ho*Wo rows (then
      one block).
    * ``dz`` ``(N*Ho*Wo, F)`` (training only): pre-activation gradient; may be ``dy`` itself
      when ``dy`` is C-contiguous and may be overwritten. A 1x1 convolution in blocks needs
      one block's: ``(R, F)``.
    * ``dcols`` ``(0, 0)`` (training only): backward reuses ``cols`` for the column
      gradient, so nothing extra is needed; pass a ``(0, 0)`` array (or ``cols`` itself).

    The forward GEMM writes straight into the output (``tmp`` of the kernels is unused:
    pass ``out``). Nothing has to survive between forward and backward: ``cols`` is plain
    scratch.
    """
    m = n * ho * wo
    k = kh * kw * cin
    rows = m
    if tiled:
        block = max(block_elements(shards) // k, 64)
        rows = min(m, block + f if training else block)
    pointwise = is_pointwise(h, w, kh, kw, ho, wo, sh, sw, 0, 0)
    in_blocks = pointwise_rows(cin, f, shards) if pointwise and tiled else 0
    shapes: dict[str, tuple[int, ...]] = {
        "cols": (in_blocks, 0) if pointwise else (rows, k),
    }
    if training:
        shapes["dz"] = (min(m, in_blocks) or m, f)
        shapes["dcols"] = (0, 0)
    return shapes


def conv1d_geometry(length: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """Output length and left padding of a Keras 1-D convolution, checked.

    ``"causal"`` pads ``kernel - 1`` zeros on the left only (Keras' ``Conv1D``), so output
    step ``t`` sees inputs up to ``t * stride``: ``out = (length - 1) // stride + 1``.

    Returns:
        ``(out, pad_left)``.

    Raises:
        ValueError: unknown padding, non-positive sizes, or a "valid" kernel longer than the
            input.
    """
    if min(length, kernel, stride) <= 0:
        raise ValueError(f"conv1d sizes must be positive, got length {length}, kernel "
                         f"{kernel}, stride {stride}")
    if isinstance(padding, str) and padding.lower() == "causal":
        return (length - 1) // stride + 1, kernel - 1
    out = output_length(length, kernel, stride, padding)
    if out <= 0:
        raise ValueError(f"conv1d 'valid': kernel {kernel} longer than input {length}")
    return out, padding_before(length, kernel, stride, padding)


def transpose_output_length(size: int, kernel: int, stride: int, padding: str) -> int:
    """Length of one output axis of a Keras transposed convolution (no ``output_padding``).

    ``"valid"``: ``(size - 1) * stride + max(kernel, stride)``; ``"same"``: ``size * stride``
    (Keras' ``compute_conv_transpose_output_shape``, every backend).

    Raises:
        ValueError: unknown padding.
    """
    if _mode(padding) == "same":
        return size * stride
    return (size - 1) * stride + max(kernel, stride)


def conv2d_transpose_geometry(h: int, w: int, kh: int, kw: int, sh: int, sw: int,
                              padding: str) -> tuple[int, int, int, int]:
    """Output size of a 2-D transposed convolution and the padding of its adjoint.

    A transposed convolution is the input-gradient of the convolution that maps its
    ``(ho, wo)`` output back to its ``(h, w)`` input with the same kernel, strides and
    padding; ``pad_top``/``pad_left`` are that convolution's (TensorFlow's rule, which JAX's
    ``conv_transpose`` padding equals when there is no ``output_padding``).

    Returns:
        ``(ho, wo, pad_top, pad_left)``.

    Raises:
        ValueError: unknown padding or non-positive sizes.
    """
    if min(h, w, kh, kw, sh, sw) <= 0:
        raise ValueError(
            f"conv2d_transpose sizes must be positive, got input {h}x{w}, kernel {kh}x{kw}, "
            f"strides {sh}x{sw}")
    ho = transpose_output_length(h, kh, sh, padding)
    wo = transpose_output_length(w, kw, sw, padding)
    return ho, wo, padding_before(ho, kh, sh, padding), padding_before(wo, kw, sw, padding)
