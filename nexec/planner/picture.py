"""The memory picture: each arena buffer a rectangle, x = steps it lives, y = its bytes,
labelled with its name where it fits; ticks on both axes.

SVG is written directly (nothing to install); other formats go through matplotlib.
"""
from __future__ import annotations

import math
import os
from html import escape
from typing import Any

from nexec.io import atomic_write

__all__ = ["plot_memory", "memory_svg", "nice_ticks"]

COLORS = {"input": "#8da0cb", "activation": "#66c2a5",
          "saved": "#fc8d62", "gradient": "#e78ac3", "workspace": "#a6d854",
          "prepared": "#e5c494"}


def _legend(plan: Any) -> list[tuple[str, str]]:
    """The roles and colours the legend lists: all of them, but weights prepared for
    inference only where the plan has some."""
    prepared = any(b.role == "prepared" for b in _arena_buffers(plan))
    return [(r, c) for r, c in COLORS.items() if r != "prepared" or prepared]


def _title(plan: Any) -> str:
    mib = 1 / 2**20
    return (f"arena {plan.arena_bytes * mib:.2f} MiB, lower bound "
            f"{plan.lower_bound_bytes * mib:.2f} MiB, naive {plan.naive_bytes * mib:.2f} MiB")


def _arena_buffers(plan: Any) -> list[Any]:
    """Buffers with memory of their own in the arena (views and parameters have none)."""
    return [b for b in plan.buffers if b.offset >= 0 and b.view_of is None]


#: Approximate width of one character of the 9-pixel label font, for "does it fit".
_CHAR_W = 5.2
_LABEL_FONT = 9


def nice_ticks(top: float, most: int = 8) -> list[float]:
    """Round tick values from 0 to at most ``top``: steps of 1, 2 or 5 times a power of ten,
    at most ``most`` + 1 of them.

    Example:
        >>> nice_ticks(27, 6)
        [0, 5, 10, 15, 20, 25]
    """
    if top <= 0:
        return [0]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if step == int(step):
        step = int(step)
    return [i * step for i in range(int(top // step) + 1)]


def _byte_unit(top: float) -> tuple[float, str]:
    for size, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if top >= size:
            return size, unit
    return 1, "B"


def _number(v: float) -> str:
    return f"{v:g}"


def memory_svg(plan: Any, width: int = 900, height: int = 440) -> str:
    """The picture as SVG text.

    Each arena buffer is a rectangle labelled with its tensor or op name where the name
    fits inside (turned upright in a tall, narrow one); every rectangle carries a
    ``<title>`` (shown on hover) with its name, role, size and steps. Both axes have
    tick marks: steps (x) and arena offset in B, KiB or MiB (y).
    """
    left, right, top, bottom = 70, 130, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    top_bytes = max(plan.arena_bytes, 1) * 1.05
    steps = max(plan.steps, 1)
    sx = plot_w / steps
    sy = plot_h / top_bytes

    def y(offset: float) -> float:
        return top + plot_h - offset * sy

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + plot_w / 2}" y="18" text-anchor="middle" font-size="13">'
           f'{escape(_title(plan))}</text>']
    labels = []
    for b in _arena_buffers(plan):
        x0 = left + b.first_step * sx
        w = (b.last_step - b.first_step + 1) * sx
        h = max(b.nbytes * sy, 0.5)
        y0 = y(b.offset) - h
        out.append(f'<rect class="buffer" x="{x0:.2f}" y="{y0:.2f}" width="{w:.2f}" '
                   f'height="{h:.2f}" fill="{COLORS.get(b.role, "#ffd92f")}" stroke="black" '
                   f'stroke-width="0.3"><title>{escape(b.name)} ({b.role}, {b.nbytes:,} B, '
                   f'steps {b.first_step}..{b.last_step})</title></rect>')
        if len(b.name) * _CHAR_W + 4 <= w and h >= _LABEL_FONT + 1:
            labels.append(f'<text class="label" x="{x0 + w / 2:.2f}" y="{y0 + h / 2 + 3:.2f}" '
                          f'text-anchor="middle" font-size="{_LABEL_FONT}">'
                          f'{escape(b.name)}</text>')
        elif len(b.name) * _CHAR_W + 4 <= h and w >= _LABEL_FONT + 1:  # tall, narrow: upright
            cx, cy = x0 + w / 2 + 3, y0 + h / 2
            labels.append(f'<text class="label" x="{cx:.2f}" y="{cy:.2f}" text-anchor="middle" '
                          f'font-size="{_LABEL_FONT}" transform="rotate(-90 {cx:.2f} {cy:.2f})">'
                          f'{escape(b.name)}</text>')
    out += labels  # above every rectangle, so no later rectangle hides one
    lb = y(plan.lower_bound_bytes)
    out.append(f'<line x1="{left}" y1="{lb:.2f}" x2="{left + plot_w}" y2="{lb:.2f}" '
               'stroke="red" stroke-dasharray="5,4"/>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               'stroke="black"/>')
    base = top + plot_h
    for step in nice_ticks(steps, 15):  # x: steps
        x = left + step * sx
        out.append(f'<line class="tick x" x1="{x:.2f}" y1="{base}" x2="{x:.2f}" '
                   f'y2="{base + 5}" stroke="black"/><text x="{x:.2f}" y="{base + 16}" '
                   f'text-anchor="middle">{step}</text>')
    size, unit = _byte_unit(top_bytes)
    for v in nice_ticks(top_bytes / size, 8):  # y: offset in the unit
        ty = y(v * size)
        out.append(f'<line class="tick y" x1="{left - 5}" y1="{ty:.2f}" x2="{left}" '
                   f'y2="{ty:.2f}" stroke="black"/><text x="{left - 8}" y="{ty + 4:.2f}" '
                   f'text-anchor="end">{_number(v)}</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 '
               f'{top + plot_h / 2})" text-anchor="middle">arena offset ({unit})</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">'
               f'step (forward, loss, backward, update) — {plan.steps} steps</text>')
    legend = _legend(plan) + [("lower bound", "red")]
    for i, (role, colour) in enumerate(legend):
        ly = top + 10 + 18 * i
        out.append(f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="12" height="12" '
                   f'fill="{colour}"/><text x="{left + plot_w + 30}" y="{ly + 1}">{role}</text>')
    note_y = top + 10 + 18 * len(legend) + 8
    out.append(f'<text x="{left + plot_w + 12}" y="{note_y}" font-size="9">hover a buffer for '
               f'its</text><text x="{left + plot_w + 12}" y="{note_y + 11}" font-size="9">'
               'name, size and steps</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def plot_memory(plan: Any, path: str) -> None:
    """Writes the picture of ``plan`` to ``path``, atomically.

    ``.svg`` needs nothing installed; other suffixes (``.png``, ``.pdf``) need matplotlib.
    """
    if os.path.splitext(path)[1].lower() == ".svg":
        text = memory_svg(plan).encode()
        atomic_write(path, lambda f: f.write(text))
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch, Rectangle
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plan.plot() needs matplotlib for this format: pip install "
                          "'nexec[plot]', or write SVG (a '.svg' path), which needs "
                          "nothing.") from e
    fig, ax = plt.subplots(figsize=(10, 5))
    mib = 1 / 2**20
    for b in _arena_buffers(plan):
        ax.add_patch(Rectangle((b.first_step, b.offset * mib), b.last_step - b.first_step + 1,
                               b.nbytes * mib, facecolor=COLORS.get(b.role, "#ffd92f"),
                               edgecolor="black", linewidth=0.3))
    ax.set_xlim(0, plan.steps)
    ax.set_ylim(0, max(plan.arena_bytes * mib, 1e-3) * 1.05)
    ax.axhline(plan.lower_bound_bytes * mib, color="red", linestyle="--", linewidth=1,
               label="lower bound")
    ax.set_xlabel("step (forward, loss, backward, update)")
    ax.set_ylabel("arena offset (MiB)")
    ax.set_title(_title(plan))
    handles = [Patch(color=c, label=r) for r, c in _legend(plan)]
    ax.legend(handles=handles + [ax.lines[0]], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8)
    fig.tight_layout()
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format=fmt))
    plt.close(fig)
