"""plot_model / model_to_dot, and the memory-plan SVG: checked against the graphs built."""
import re
import shutil
import sys
import xml.etree.ElementTree as ET

import pytest

from nexec import Input, Model, Sequential, layers
from nexec.plot import model_to_dot, plot_model
from nexec.utils import plot_model as utils_plot_model


def edges(dot):
    return set(re.findall(r'^\s*"([^"]+)" -> "([^"]+)";$', dot, re.M))


def nodes(dot):
    return re.findall(r'^\s*"([^"]+)" \[label=', dot, re.M)


def inception_residual():
    x = Input(shape=(8, 8, 1), name="img")
    a = layers.Conv2D(4, 1, name="a")(x)
    b = layers.Conv2D(4, 3, padding="same", name="b")(layers.Conv2D(2, 1, name="b_reduce")(x))
    mix = layers.Concatenate(name="mix")([a, b])
    y = layers.Add(name="res")([layers.Conv2D(8, 3, padding="same", name="c")(mix), mix])
    return Model(x, layers.Dense(2, name="out")(layers.Flatten(name="flat")(y)), name="net")


def test_boxes_and_arrows_are_the_graph():
    dot = model_to_dot(inception_residual())
    assert sorted(nodes(dot)) == sorted(["img", "a", "b_reduce", "b", "mix", "c", "res", "flat",
                                         "out"])
    assert edges(dot) == {("img", "a"), ("img", "b_reduce"), ("b_reduce", "b"), ("a", "mix"),
                          ("b", "mix"), ("mix", "c"), ("c", "res"), ("mix", "res"),
                          ("res", "flat"), ("flat", "out")}


def test_shapes_activations_dtype_trainable_rows():
    x = Input(shape=(3,), name="x")
    m = Model(x, layers.Dense(2, activation="tanh", name="d", trainable=False)(x))
    plain = model_to_dot(m)
    assert "(None, 2)" not in plain and "tanh" not in plain
    full = model_to_dot(m, show_shapes=True, show_dtype=True, show_layer_activations=True,
                        show_trainable=True)
    assert "<td>input</td><td>(None, 3)</td>" in full
    assert "<td>output</td><td>(None, 2)</td>" in full
    assert "<td>activation</td><td>tanh</td>" in full
    assert "<td>dtype</td><td>float32</td>" in full
    assert "<td>trainable</td><td>no</td>" in full
    assert "d (Dense)" in full
    assert "<b>Dense</b>" in model_to_dot(m, show_layer_names=False)


def test_multi_input_shapes_and_shared_layer_drawn_once():
    a = Input(shape=(4,), name="left")
    b = Input(shape=(4,), name="right")
    shared = layers.Dense(3, name="shared")
    joined = layers.Concatenate(name="join")([shared(a), shared(b)])
    dot = model_to_dot(Model([a, b], joined), show_shapes=True)
    assert nodes(dot).count("shared") == 1
    assert edges(dot) == {("left", "shared"), ("right", "shared"), ("shared", "join")}
    assert "[(None, 3), (None, 3)]" in dot  # Concatenate's two inputs
    assert "<td>output</td><td>multiple</td>" not in dot  # shared: same shape both calls


def test_nested_model_one_box_or_expanded():
    xi = Input(shape=(4,), name="enc_in")
    encoder = Model(xi, layers.Dense(2, name="code")(layers.Dense(3, name="enc_h")(xi)),
                    name="encoder")
    p = Input(shape=(4,), name="p")
    outer = Model(p, layers.Dense(1, name="head")(encoder(p)), name="outer")
    flat = model_to_dot(outer)
    assert edges(flat) == {("p", "encoder"), ("encoder", "head")}
    nested = model_to_dot(outer, expand_nested=True)
    assert "subgraph cluster_1" in nested and 'label="encoder"' in nested
    assert edges(nested) == {("p", "encoder/enc_in"), ("encoder/enc_in", "encoder/enc_h"),
                             ("encoder/enc_h", "encoder/code"), ("encoder/code", "head")}


def test_sequential_includes_its_input():
    seq = Sequential([layers.Dense(3, input_shape=(5,), name="one"),
                      layers.Dense(2, name="two")], name="stack")
    dot = model_to_dot(seq, rankdir="LR")
    assert dot.startswith('digraph "stack" {') and "rankdir=LR" in dot
    assert len(nodes(dot)) == 3 and ("one", "two") in edges(dot)


def test_names_with_quotes_are_escaped():
    x = Input(shape=(2,), name='say "hi"')
    dot = model_to_dot(Model(x, layers.Dense(1, name="d")(x)))
    assert '"say \\"hi\\"" -> "d";' in dot


def test_bad_rankdir():
    with pytest.raises(ValueError, match="rankdir"):
        model_to_dot(inception_residual(), rankdir="UP")


def test_dot_file_written_atomically(tmp_path):
    m = inception_residual()
    text = utils_plot_model(m, str(tmp_path / "net.dot"), show_shapes=True)
    assert (tmp_path / "net.dot").read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["net.dot"]


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"\.dot, \.gv, \.png, \.svg"):
        plot_model(inception_residual(), str(tmp_path / "net.bmp"))


def test_picture_without_graphviz_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match="pip install graphviz.*apt-get install graphviz"):
        plot_model(inception_residual(), str(tmp_path / "net.png"))
    assert not (tmp_path / "net.png").exists()


def test_picture_hands_the_dot_text_to_graphviz(tmp_path, monkeypatch):
    seen = {}

    class Source:
        def __init__(self, text):
            seen["dot"] = text

        def pipe(self, format):
            seen["format"] = format
            return b"PICTURE"

    fake = type(sys)("graphviz")
    fake.Source, fake.ExecutableNotFound = Source, RuntimeError
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    dot = plot_model(inception_residual(), str(tmp_path / "net.jpeg"), dpi=96)
    assert seen == {"dot": dot, "format": "jpg"} and "dpi=96" in dot
    assert (tmp_path / "net.jpeg").read_bytes() == b"PICTURE"


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz' dot program")
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_real_graphviz_picture(tmp_path, suffix, magic):
    pytest.importorskip("graphviz")
    plot_model(inception_residual(), str(tmp_path / f"net{suffix}"), show_shapes=True)
    assert (tmp_path / f"net{suffix}").read_bytes().startswith(magic)


# ----- the memory plan as SVG --------------------------------------------------------------
def test_memory_plan_svg_has_one_rectangle_per_arena_buffer(tmp_path):
    plan = inception_residual().memory_plan(batch_size=4, training=True)
    plan.plot(str(tmp_path / "mem.svg"))
    root = ET.parse(tmp_path / "mem.svg").getroot()  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    titled = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    own = [b for b in plan.buffers if b.offset >= 0 and b.view_of is None]
    assert len(titled) == len(own) > 0
    assert {r.find(f"{ns}title").text.rsplit(" (", 1)[0] for r in titled} == {b.name for b in own}
    width = float(root.get("width"))
    for r in titled:  # inside the picture
        assert 0 <= float(r.get("x")) and float(r.get("x")) + float(r.get("width")) <= width
    assert "lower bound" in (tmp_path / "mem.svg").read_text()
