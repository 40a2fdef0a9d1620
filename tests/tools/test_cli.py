"""The ``nexec`` command line: demo, summary, plot (``plugins`` is in tests/plugins)."""
import json
import os
import subprocess
import sys

import pytest

from nexec import Input, Model, Sequential, layers
from nexec.cli import main


def mlp():
    x = Input(shape=(6,), name="features")
    h = layers.Dense(4, activation="relu", name="hidden")(x)
    return Model(x, layers.Dense(2, activation="softmax", name="probs")(h), name="tiny")


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# ----- demo ----------------------------------------------------------------------------------
def test_demo_quick(tmp_path, capsys):
    status, out, err = run(capsys, "demo", "--quick", "--out", str(tmp_path / "pics"))
    assert status == 0, err
    for name in ("seed_sequential", "seed_functional", "inception_residual_cnn", "two_headed"):
        assert f'Model: "{name}"' in out
    assert "Connected to" in out                       # the graph models' summary column
    assert "Epoch 2/2" in out and "Epoch 3/3" in out   # seed MLP, CNN
    accuracy = [l for l in out.splitlines() if l.startswith("Test accuracy on 359 held-out")]
    assert len(accuracy) == 1
    assert float(accuracy[0].rsplit(" ", 1)[1].rstrip("%")) > 50  # 3 short epochs
    assert (tmp_path / "pics" / "cnn.dot").read_text().startswith('digraph "inception_residual')
    assert (tmp_path / "pics" / "cnn_memory.svg").read_text().startswith("<svg")
    assert str(tmp_path / "pics" / "cnn_memory.svg") in out


def test_demo_without_graphviz_writes_dot_and_says_how_to_render(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # a bare install: no Graphviz
    status, out, _ = run(capsys, "demo", "--quick", "--out", str(tmp_path))
    assert status == 0
    assert "(no PNG of the graph:" in out and "pip install graphviz" in out
    assert f"The CNN's graph:           {tmp_path / 'cnn.dot'}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.dot", "cnn_memory.svg"]


def test_demo_reaches_95_percent_on_held_out_digits(tmp_path):
    """The full demo's promise (12 epochs on 1,438 images; about 3 s once compiled)."""
    from nexec.demo import run_demo

    result = run_demo(out_dir=str(tmp_path), verbose=0)
    assert result["test_accuracy"] > 0.95


# ----- summary -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["saved", "to_json", "config"])
def test_summary_of_each_file_kind(tmp_path, capsys, kind):
    model = mlp()
    path = tmp_path / "model.file"
    if kind == "saved":
        model.save(str(path))
    elif kind == "to_json":
        path.write_text(model.to_json())
    else:
        path.write_text(json.dumps(model.get_config()))
    status, out, _ = run(capsys, "summary", str(path))
    assert status == 0
    model.summary()
    expected, _ = capsys.readouterr()
    assert out == expected


def test_summary_of_a_saved_sequential(tmp_path, capsys):
    seq = Sequential([layers.Dense(3, input_shape=(5,), name="only")], name="stack")
    seq.save(str(tmp_path / "s.nexec"))
    status, out, _ = run(capsys, "summary", str(tmp_path / "s.nexec"))
    assert status == 0 and 'Model: "stack"' in out and "only (Dense)" in out


def error_line(capsys, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nexec: error: ")
    return lines[0]


def test_summary_errors_are_one_line(tmp_path, capsys):
    assert "no such file" in error_line(capsys, "summary", str(tmp_path / "missing.nexec"))
    (tmp_path / "notes.txt").write_text("just words\n")
    assert "neither a saved model" in error_line(capsys, "summary", str(tmp_path / "notes.txt"))
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    assert "not a nexec model config" in error_line(capsys, "summary",
                                                    str(tmp_path / "list.json"))
    mlp().save(str(tmp_path / "m.nexec"))
    raw = (tmp_path / "m.nexec").read_bytes()
    (tmp_path / "cut.nexec").write_bytes(raw[: len(raw) // 2])
    assert "truncated" in error_line(capsys, "summary", str(tmp_path / "cut.nexec"))
    (tmp_path / "bad.json").write_text(json.dumps({"class_name": "Model", "config": {
        "name": "m", "layers": [{"class_name": "NoSuchLayer", "config": {}}],
        "nodes": [], "input_layers": [], "output_layers": []}}))
    assert "NoSuchLayer" in error_line(capsys, "summary", str(tmp_path / "bad.json"))
    (tmp_path / "partial.json").write_text(json.dumps({"class_name": "Model", "config": {
        "name": "m", "layers": []}}))
    assert "malformed model config" in error_line(capsys, "summary",
                                                  str(tmp_path / "partial.json"))


# ----- plot ----------------------------------------------------------------------------------
def test_plot_dot(tmp_path, capsys):
    mlp().save(str(tmp_path / "m.nexec"))
    status, out, _ = run(capsys, "plot", str(tmp_path / "m.nexec"), "-o",
                         str(tmp_path / "m.dot"), "--rankdir", "LR")
    assert status == 0 and f"wrote {tmp_path / 'm.dot'}" in out
    dot = (tmp_path / "m.dot").read_text()
    assert "rankdir=LR" in dot and '"features" -> "hidden"' in dot and "(None, 4)" in dot
    status, _, _ = run(capsys, "plot", str(tmp_path / "m.nexec"), "-o",
                       str(tmp_path / "bare.dot"), "--no-shapes")
    assert status == 0 and "(None, 4)" not in (tmp_path / "bare.dot").read_text()


def test_plot_errors_are_one_line(tmp_path, capsys, monkeypatch):
    mlp().save(str(tmp_path / "m.nexec"))
    assert "cannot write" in error_line(capsys, "plot", str(tmp_path / "m.nexec"), "-o",
                                        str(tmp_path / "m.gif"))
    monkeypatch.setitem(sys.modules, "graphviz", None)  # as if not installed
    line = error_line(capsys, "plot", str(tmp_path / "m.nexec"), "-o", str(tmp_path / "m.png"))
    assert "needs Graphviz" in line and "pip install graphviz" in line
    assert not (tmp_path / "m.png").exists()


def test_bad_command_lines_exit_2(capsys):
    for argv in ([], ["bogus"], ["plot", "x.nexec"], ["summary"]):
        with pytest.raises(SystemExit) as e:
            status = main(argv)
            raise SystemExit(status)
        assert e.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("command", ["demo", "summary", "plot", "plugins"])
def test_help_of_each_command(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert f"usage: nexec {command}" in capsys.readouterr().out


def test_python_dash_m_nexec(tmp_path):
    mlp().save(str(tmp_path / "m.nexec"))
    done = subprocess.run([sys.executable, "-m", "nexec", "summary", str(tmp_path / "m.nexec")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert 'Model: "tiny"' in done.stdout
    version = subprocess.run([sys.executable, "-m", "nexec", "--version"], capture_output=True,
                             text=True, timeout=120)
    assert version.stdout.strip().startswith("nexec ")


def test_a_closed_pipe_ends_quietly_as_cpython_recommends():
    """``nexec plugins | head -0``: the reader is gone before nexec writes."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, sys
        r, w = os.pipe()
        os.close(r)  # the reader (head) has already exited
        sys.stdout = os.fdopen(w, "w")
        from nexec.cli import main
        code = main(["plugins"])
        sys.stderr.write(f"status {code}")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "status 141"  # no "Broken pipe", no traceback at exit


def test_the_progress_bar_blanks_what_a_longer_line_left():
    import io

    from nexec.training.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    bar = ProgressBar(100, 1, stream=out)
    bar._last_draw = -1.0
    bar.update(1, {"loss": 123456.789})
    long_line = out.getvalue()
    bar._last_draw = -1.0
    bar.update(2, {"loss": 0.5})  # shorter than the line before it
    screen = ""
    for chunk in out.getvalue().replace("\n", "\r").split("\r"):  # what a terminal shows
        screen = chunk + screen[len(chunk):]
    assert "loss: 0.5000" in screen and "789" not in screen and len(long_line) > 1
