"""Small readers of nexec's printed output, shared by the graph tests."""
from __future__ import annotations

import re

from nexec.planner.order import topological_order


def summary_text(model, **kwargs) -> str:
    """What ``model.summary`` hands to ``print_fn`` (all calls joined)."""
    chunks: list[str] = []
    model.summary(print_fn=chunks.append, **kwargs)
    assert chunks, "summary() never called print_fn"
    return "\n".join(chunks)


def summary_header(text: str) -> list[str]:
    lines = text.splitlines()
    first_rule = next(i for i, l in enumerate(lines) if l.startswith("="))
    return re.split(r"\s{2,}", lines[first_rule - 1].strip())


def summary_rows(text: str) -> list[dict]:
    """Table rows as dicts: name, type, shape, params (int) and connected (list)."""
    lines = text.splitlines()
    rules = [i for i, l in enumerate(lines) if l.startswith("=")]
    assert len(rules) == 2, text
    rows: list[dict] = []
    for line in lines[rules[0] + 1:rules[1]]:
        if not line.strip() or set(line.strip()) == {"_"}:
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if line.startswith("  "):  # continuation: one more 'Connected to' entry
            assert len(cells) == 1, line
            rows[-1]["connected"].append(cells[0])
            continue
        m = re.fullmatch(r"(\S+) \((\w+)\)", cells[0])
        assert m, f"bad first cell in {line!r}"
        rows.append({"name": m.group(1), "type": m.group(2), "shape": cells[1],
                     "params": int(cells[2].replace(",", "")),
                     "connected": cells[3:]})
    return rows


def totals(text: str) -> tuple[int, int, int]:
    def grab(label: str) -> int:
        m = re.search(rf"^{label} params: ([\d,]+)$", text, re.M)
        assert m, f"no '{label} params' line in:\n{text}"
        return int(m.group(1).replace(",", ""))

    return grab("Total"), grab("Trainable"), grab("Non-trainable")


def connectivity(model) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each node (topological order): its layer and the (layer, output index) it reads."""
    return [(n.layer.name, [(t.node.layer.name, t.index) for t in n.inputs])
            for n in topological_order(model.outputs)]


def dense_params(n_in: int, units: int) -> int:
    return n_in * units + units


def conv_params(kh: int, kw: int, cin: int, filters: int) -> int:
    return kh * kw * cin * filters + filters
