"""The memory picture: each arena buffer a rectangle, x = steps it lives, y = its bytes.

SVG is written directly (nothing to install); other formats go through matplotlib.
"""
from __future__ import annotations

import os
from html import escape
from typing import Any

from nexec.io import atomic_write

__all__ = ["plot_memory", "memory_svg"]

COLORS = {"input": "#8da0cb", "activation": "#66c2a5",
          "saved": "#fc8d62", "gradient": "#e78ac3", "workspace": "#a6d854"}


def _title(plan: Any) -> str:
    mib = 1 / 2**20
    return (f"arena {plan.arena_bytes * mib:.2f} MiB, lower bound "
            f"{plan.lower_bound_bytes * mib:.2f} MiB, naive {plan.naive_bytes * mib:.2f} MiB")


def _arena_buffers(plan: Any) -> list[Any]:
    """Buffers with memory of their own in the arena (views and parameters have none)."""
    return [b for b in plan.buffers if b.offset >= 0 and b.view_of is None]


def memory_svg(plan: Any, width: int = 900, height: int = 420) -> str:
    """The picture as SVG text; hovering a rectangle shows the buffer's name and size."""
    left, right, top, bottom = 70, 130, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    top_bytes = max(plan.arena_bytes, 1) * 1.05
    sx = plot_w / max(plan.steps, 1)
    sy = plot_h / top_bytes

    def y(offset: float) -> float:
        return top + plot_h - offset * sy

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + plot_w / 2}" y="18" text-anchor="middle" font-size="13">'
           f'{escape(_title(plan))}</text>']
    for b in _arena_buffers(plan):
        x0 = left + b.first_step * sx
        w = (b.last_step - b.first_step + 1) * sx
        h = max(b.nbytes * sy, 0.5)
        out.append(f'<rect x="{x0:.2f}" y="{y(b.offset) - h:.2f}" width="{w:.2f}" '
                   f'height="{h:.2f}" fill="{COLORS.get(b.role, "#ffd92f")}" stroke="black" '
                   f'stroke-width="0.3"><title>{escape(b.name)} ({b.role}, {b.nbytes:,} B, '
                   f'steps {b.first_step}..{b.last_step})</title></rect>')
    lb = y(plan.lower_bound_bytes)
    out.append(f'<line x1="{left}" y1="{lb:.2f}" x2="{left + plot_w}" y2="{lb:.2f}" '
               'stroke="red" stroke-dasharray="5,4"/>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               'stroke="black"/>')
    mib = 2**20
    for i in range(5):  # y ticks in MiB
        v = top_bytes * i / 4
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.2f}" text-anchor="end">'
                   f'{v / mib:.2f}</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 '
               f'{top + plot_h / 2})" text-anchor="middle">arena offset (MiB)</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">'
               f'step (forward, loss, backward, update) — {plan.steps} steps</text>')
    legend = list(COLORS.items()) + [("lower bound", "red")]
    for i, (role, colour) in enumerate(legend):
        ly = top + 10 + 18 * i
        out.append(f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="12" height="12" '
                   f'fill="{colour}"/><text x="{left + plot_w + 30}" y="{ly + 1}">{role}</text>')
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
    handles = [Patch(color=c, label=r) for r, c in COLORS.items()]
    ax.legend(handles=handles + [ax.lines[0]], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8)
    fig.tight_layout()
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format=fmt))
    plt.close(fig)
