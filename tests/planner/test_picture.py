"""The memory picture's SVG: valid XML, every buffer a titled rectangle, names on the ones
wide enough, ticks on both axes (planner/picture.py)."""
import xml.etree.ElementTree as ET

import pytest

from nexec import Input, Model, layers
from nexec.planner.memory import BufferRecord, MemoryPlan
from nexec.planner.picture import memory_svg, nice_ticks

NS = "{http://www.w3.org/2000/svg}"


def _plan():
    mib = 2**20
    buffers = [BufferRecord("wide_activation", "activation", (32, 64), mib, 0, 0, 9),
               BufferRecord("tiny", "workspace", (1,), 64, mib, 3, 3),
               BufferRecord("grad wide_activation", "gradient", (32, 64), mib // 2, mib, 5, 9),
               BufferRecord("kernel", "parameter", (4, 4), 64, -1, -1, -1)]
    return MemoryPlan(buffers, arena_bytes=mib + mib // 2, lower_bound_bytes=mib + mib // 2,
                      naive_bytes=3 * mib, steps=10, alignment=64, concat_in_place=[])


def _parse(svg):
    return ET.fromstring(svg)  # raises on invalid XML


def test_every_arena_buffer_is_a_rectangle_with_a_title():
    root = _parse(memory_svg(_plan()))
    rects = [r for r in root.iter(f"{NS}rect") if r.get("class") == "buffer"]
    titles = [r.find(f"{NS}title").text for r in rects]
    assert titles == ["wide_activation (activation, 1,048,576 B, steps 0..9)",
                      "tiny (workspace, 64 B, steps 3..3)",
                      "grad wide_activation (gradient, 524,288 B, steps 5..9)"]


def test_names_label_the_rectangles_they_fit_in():
    root = _parse(memory_svg(_plan()))
    labels = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "label"]
    assert labels == ["wide_activation", "grad wide_activation"]  # "tiny" is 0.5 px high


def test_axes_have_ticks_for_steps_and_bytes():
    root = _parse(memory_svg(_plan()))
    ticks = {"x": [], "y": []}
    texts = list(root.iter(f"{NS}text"))
    for line in root.iter(f"{NS}line"):
        cls = line.get("class") or ""
        if cls.startswith("tick"):
            ticks[cls.split()[1]].append(line)
    assert len(ticks["x"]) == 11 and len(ticks["y"]) >= 4
    xs = [float(t.get("x1")) for t in ticks["x"]]
    assert xs == sorted(xs) and xs[0] == 70.0
    ys = [float(t.get("y1")) for t in ticks["y"]]
    assert ys == sorted(ys, reverse=True)  # upwards: offsets grow
    shown = [t.text for t in texts]
    for step in range(11):
        assert str(step) in shown
    assert "arena offset (MiB)" in shown and {"0.6", "1.4"} <= set(shown)


def test_a_real_training_plan_draws_labelled_buffers(tmp_path):
    x = Input(shape=(8, 8, 1), name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    m = Model(x, layers.Dense(3, activation="softmax", name="head")(layers.Flatten()(h)))
    m.compile("sgd", "categorical_crossentropy")
    plan = m.memory_plan(batch_size=32, training=True)
    path = tmp_path / "plan.svg"
    plan.plot(str(path))
    root = ET.parse(path).getroot()
    labels = {t.text for t in root.iter(f"{NS}text") if t.get("class") == "label"}
    names = {b.name for b in plan.buffers}
    assert labels and labels <= names
    assert any(ln.get("class") == "tick x" for ln in root.iter(f"{NS}line"))


@pytest.mark.parametrize("top,most,expected", [
    (27, 6, [0, 5, 10, 15, 20, 25]),
    (10, 15, list(range(11))),
    (2.1, 8, [0, 0.5, 1.0, 1.5, 2.0]),
    (0, 5, [0]),
    (700, 8, [0, 100, 200, 300, 400, 500, 600, 700]),
])
def test_nice_ticks(top, most, expected):
    assert nice_ticks(top, most) == pytest.approx(expected)
