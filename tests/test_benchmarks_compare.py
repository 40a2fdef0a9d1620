"""``benchmarks/compare.py``'s harness logic, without any peer framework: busy processes,
argument parsing, peer commands, and the tables with an inference-only peer and load levels.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import compare  # noqa: E402


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _cpu_ticks(pid: int) -> int:
    """User + system clock ticks of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_busy_processes_spin_and_leave_nothing_behind():
    with compare.busy_processes(2) as pids:
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        time.sleep(0.3)
        assert all(_cpu_ticks(p) > 0 for p in pids)  # they burn CPU, not sleep
    assert not any(_alive(p) for p in pids)  # killed and reaped (no zombie either)


def test_busy_processes_are_killed_when_the_run_raises():
    with pytest.raises(RuntimeError, match="run failed"):
        with compare.busy_processes(1) as pids:
            raise RuntimeError("run failed")
    assert not _alive(pids[0])
    with compare.busy_processes(0) as none:
        assert none == []


def test_parse_busy_and_python():
    assert compare.parse_busy("0,1") == [0, 1]
    assert compare.parse_busy("2") == [2]
    for bad in ["", "x", "-1", "0,0", "1.5"]:
        with pytest.raises(ValueError, match="--busy"):
            compare.parse_busy(bad)
    assert compare.parse_pythons([f"keras={sys.executable}"]) == {"keras": sys.executable}
    for bad in ["keras", f"caffe={sys.executable}", "keras=/no/such/python"]:
        with pytest.raises(ValueError, match="--python"):
            compare.parse_pythons([bad])


@pytest.mark.parametrize("argv", [["--busy", "x"], ["--python", "keras=/no/such/python"],
                                  ["--workloads", "vgg"], ["--frameworks", "caffe"]])
def test_main_rejects_bad_arguments_before_running(argv, capsys):
    with pytest.raises(SystemExit) as e:
        compare.main(argv)
    assert e.value.code == 2
    assert argv[1].split("=")[-1] in capsys.readouterr().err


def test_peer_commands():
    own = compare.peer_command("pytorch", "resnet18", None)
    assert own == [str(compare.HERE / "peers_resnet.py"), "pytorch"]
    assert compare.peer_command("onnxruntime", "cnn", None) is None
    assert compare.peer_command("onnxruntime", "cnn", Path("/p/ort_peer.py")) == \
        ["/p/ort_peer.py", "cnn"]
    assert compare.peer_command("nexec", "resnet18", Path("/b/nexec_peer.py")) == \
        ["/b/nexec_peer.py", "resnet18"]
    scripts, notes = compare.available(REPO / "does-not-exist")
    assert scripts["nexec"].name == "nexec_peer.py"
    assert all(scripts[fw] is None for fw in scripts if fw != "nexec")
    assert len(notes) == 3  # one per peer: not installed, or its script not found


def test_run_one_under_another_interpreter_and_load(tmp_path):
    script = tmp_path / "peer.py"
    script.write_text("import json, sys\nprint('log line')\n"
                      "print(json.dumps({'workload': sys.argv[1], 'predict_s': 0.5, "
                      "'threads': sys.argv[3]}))\n")
    with compare.busy_processes(1):
        r = compare.run_one([str(script), "w"], "w", 3, dict(os.environ), 60,
                            python=sys.executable)
    assert r["workload"] == "w" and r["threads"] == "3" and r["process_s"] > 0
    script.write_text("import sys\nsys.exit('broken peer')\n")
    r = compare.run_one([str(script), "w"], "w", 1, dict(os.environ), 60)
    assert "broken peer" in r["error"]


def _runs(busy: int, slow: float) -> list[dict]:
    runs = [dict(framework="nexec", workload="cnn", version="n", busy=busy,
                 train_samples_per_s=100 / slow, predict_samples_per_s=400 / slow,
                 epoch_s=1.0 * slow, predict_s=0.25 * slow, first_epoch_s=2.0,
                 peak_rss_mb=100.0),
            dict(framework="onnxruntime", workload="cnn", version="o", busy=busy,
                 predict_samples_per_s=800 / slow, predict_s=0.125 * slow)]
    return runs


def test_tables_with_an_inference_only_peer_and_load_levels(tmp_path, capsys):
    fws = ["nexec", "onnxruntime"]
    by = {0: compare.medians(_runs(0, 1.0), fws, ["cnn"]),
          1: compare.medians(_runs(1, 2.5), fws, ["cnn"])}
    rat = {lv: compare.ratios(by[lv]) for lv in by}
    assert rat[0]["cnn"]["onnxruntime"] == {"predict_samples_per_s": 0.5}
    text = compare.format_table(by[0], rat[0], fws)
    train = next(ln for ln in text.splitlines() if "train samples/s" in ln)
    cells = [c.strip() for c in train.split("|")[1:-1]]
    assert cells[2:] == ["100.0", "-", "-"]  # nexec, onnxruntime, nexec/onnxruntime
    assert "nexec/onnxruntime" in text and "0.50" in text

    slow = compare.slowdowns(by, [0, 1])
    assert slow[1]["cnn"]["nexec"] == pytest.approx({"epoch_s": 2.5, "predict_s": 2.5})
    assert slow[1]["cnn"]["onnxruntime"] == pytest.approx({"predict_s": 2.5})
    load = compare.format_load_table(by, [0, 1], fws)
    assert "busy 1/quiet" in load.splitlines()[0]
    ort = [ln for ln in load.splitlines() if "onnxruntime" in ln]
    assert len(ort) == 1 and "predict s" in ort[0] and ort[0].rstrip(" |").endswith("2.50")

    saved = dict(title="t", versions={"nexec": "n", "onnxruntime": "o"}, busy=[0, 1],
                 medians=by[0], ratios=rat[0],
                 by_busy={str(lv): {"medians": by[lv], "ratios": rat[lv]} for lv in by})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(saved))
    assert compare.main(["--from-json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "quiet (0 busy processes" in out and "busy 1 (1 busy process " in out
    assert "busy 1/quiet" in out
