"""The memory picture: each arena buffer a rectangle, x = steps it lives, y = its bytes."""
from __future__ import annotations

from typing import Any

__all__ = ["plot_memory"]

COLORS = {"input": "#8da0cb", "activation": "#66c2a5",
          "saved": "#fc8d62", "gradient": "#e78ac3", "workspace": "#a6d854"}


def plot_memory(plan: Any, path: str) -> None:
    """Writes a PNG (or any format matplotlib knows from the suffix) of ``plan``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch, Rectangle
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plan.plot() needs matplotlib: pip install 'nexec[plot]'") from e
    fig, ax = plt.subplots(figsize=(10, 5))
    mib = 1 / 2**20
    for b in plan.buffers:
        if b.offset < 0 or b.view_of is not None:
            continue
        ax.add_patch(Rectangle((b.first_step, b.offset * mib), b.last_step - b.first_step + 1,
                               b.nbytes * mib, facecolor=COLORS.get(b.role, "#ffd92f"),
                               edgecolor="black", linewidth=0.3))
    ax.set_xlim(0, plan.steps)
    ax.set_ylim(0, max(plan.arena_bytes * mib, 1e-3) * 1.05)
    ax.axhline(plan.lower_bound_bytes * mib, color="red", linestyle="--", linewidth=1,
               label="lower bound")
    ax.set_xlabel("step (forward, loss, backward, update)")
    ax.set_ylabel("arena offset (MiB)")
    ax.set_title(f"arena {plan.arena_bytes * mib:.2f} MiB, lower bound "
                 f"{plan.lower_bound_bytes * mib:.2f} MiB, naive {plan.naive_bytes * mib:.2f} MiB")
    handles = [Patch(color=c, label=r) for r, c in COLORS.items()]
    ax.legend(handles=handles + [ax.lines[0]], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
