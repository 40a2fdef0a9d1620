"""nexec against PyTorch, Keras (TensorFlow backend) and ONNX Runtime on the same workloads.

    python benchmarks/compare.py [--workloads seed_mlp,wide_mlp,cnn,resnet18] [--repeats 3]
                                 [--threads 2] [--peers ../shared/peers] [--busy 0,1]
                                 [--python keras=PATH] [--json out.json]
                                 [--plot docs/performance.png]

Every (workload, framework) run is a fresh subprocess (so peak RSS is per workload and
nothing is cached in-process between runs), and runs alternate: for each repeat, for each
workload, for each load level: nexec, pytorch, keras, onnxruntime. Machine load that drifts
during the session therefore hits every framework alike. The tables give medians over the
repeats and ratios nexec/peer.

* PyTorch and Keras run the reference scripts ``torch_peer.py`` / ``keras_peer.py`` of the
  peers directory (default ``../shared/peers`` next to the repository; ``--peers DIR``);
  ONNX Runtime runs ``ort_peer.py`` there (the PyTorch peer's model exported to ONNX;
  inference only, so its training metrics are "-"); nexec runs
  ``benchmarks/nexec_peer.py``, which prints the same JSON fields. The ``resnet18``
  workload's peers are ``benchmarks/peers_resnet.py``. A peer that is not installed (or
  whose script is missing) is left out with a note, never faked.
* ``--python FRAMEWORK=PATH`` runs a framework under another interpreter (e.g. Keras from a
  virtualenv with TensorFlow); its modules are looked up in that interpreter.
* ``--busy 0,1``: before each framework's run, start that many busy processes (a pure-Python
  spin loop each) and kill them after it, so every framework sees the same load; several
  levels alternate inside each repeat, and a second table gives, per framework, the times
  at each level and the slowdown against the first level.
* Same thread count everywhere (``--threads``, default 2): ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` in every child's
  environment, plus ``torch.set_num_threads`` / TF intra-op threads / ORT's intra-op threads
  inside the peer scripts.
* float32 data, identical arrays (``make_data``, seed 0); the specs of
  ``benchmarks/workloads.py`` are checked against the peers' ``workloads.py`` first.
* Before measuring, nexec runs each workload once on tiny sizes (untimed), so its first
  epoch is measured with Numba's on-disk cache filled, which is what a user sees on every
  run but the very first after installing. ``--cold-cache`` instead gives every nexec run an
  empty ``NUMBA_CACHE_DIR`` (JIT compilation inside the first epoch).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = REPO.parent / "shared" / "peers"
FRAMEWORKS = ("nexec", "pytorch", "keras", "onnxruntime")
#: Frameworks measured on predict only (their training metrics print as "-").
INFERENCE_ONLY = ("onnxruntime",)
WORKLOADS = ("seed_mlp", "wide_mlp", "cnn", "resnet18")
#: Workloads whose peer sides live in this repository (``benchmarks/peers_resnet.py``).
OWN_PEER_WORKLOADS = {"resnet18": HERE / "peers_resnet.py"}
#: framework -> (script in the peers directory, modules it imports)
PEER_SCRIPTS = {"pytorch": ("torch_peer.py", ("torch",)),
                "keras": ("keras_peer.py", ("tensorflow", "keras")),
                "onnxruntime": ("ort_peer.py", ("torch", "onnx", "onnxruntime", "onnxscript"))}
#: What one busy process runs: a pure-Python spin loop that keeps one core busy.
BUSY_CODE = "while True: pass"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")

# (JSON field, row label, True when higher is better)
METRICS = [
    ("train_samples_per_s", "train samples/s", True),
    ("predict_samples_per_s", "predict samples/s", True),
    ("first_epoch_s", "first epoch s", False),
    ("peak_rss_mb", "peak RSS MB", False),
]
# The under-load table: times, so that busy/quiet is the slowdown (> 1: slower under load).
LOAD_METRICS = [("epoch_s", "train epoch s"), ("predict_s", "predict s")]


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spec_mismatches(peers_workloads: Path) -> list[str]:
    """Differences between the peers' workload specs and nexec's mirror (empty: identical)."""
    sys.path.insert(0, str(REPO))
    from benchmarks import workloads as ours

    theirs = load_module(peers_workloads, "_peers_workloads")
    bad = []
    for name in ("SEED_MLP", "WIDE_MLP", "CNN"):
        a, b = getattr(ours, name), getattr(theirs, name, None)
        if a != b:
            bad.append(f"{name}: benchmarks/workloads.py has {a}, {peers_workloads} has {b}")
    return bad


def missing_modules(python: str, modules: tuple[str, ...]) -> list[str] | None:
    """Modules that interpreter ``python`` cannot import (None: the interpreter did not run)."""
    if python == sys.executable:
        return [m for m in modules if importlib.util.find_spec(m) is None]
    code = ("import importlib.util, sys; print(','.join(m for m in sys.argv[1:] "
            "if importlib.util.find_spec(m) is None))")
    try:
        p = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    return [m for m in p.stdout.strip().split(",") if m]


def available(peers: Path, pythons: dict[str, str] | None = None
              ) -> tuple[dict[str, Path | None], list[str]]:
    """Framework -> its peers-directory script (None: only the workloads of
    ``OWN_PEER_WORKLOADS`` can run it), and notes on what is left out and why.

    Args:
        peers: The peers directory (``torch_peer.py``, ``keras_peer.py``, ``ort_peer.py``).
        pythons: framework -> interpreter (default ``sys.executable``).
    """
    pythons = pythons or {}
    scripts: dict[str, Path | None] = {"nexec": HERE / "nexec_peer.py"}
    notes = []
    for fw, (script, modules) in PEER_SCRIPTS.items():
        python = pythons.get(fw, sys.executable)
        missing = missing_modules(python, modules)
        path = peers / script
        if missing is None:
            notes.append(f"{fw}: left out, {python} did not run")
        elif missing:
            notes.append(f"{fw}: left out, {' and '.join(missing)} not installed"
                         + (f" in {python}" if fw in pythons else ""))
        elif not path.is_file():
            scripts[fw] = None
            notes.append(f"{fw}: {path} not found (use --peers DIR); runs "
                         f"{', '.join(OWN_PEER_WORKLOADS)} only")
        else:
            scripts[fw] = path
    return scripts, notes


def peer_command(fw: str, workload: str, script: Path | None) -> list[str] | None:
    """The script and arguments (before ``--threads``) that run ``fw`` on ``workload``;
    None when this framework cannot run it here."""
    if fw != "nexec" and workload in OWN_PEER_WORKLOADS:
        return [str(OWN_PEER_WORKLOADS[workload]), fw]
    return None if script is None else [str(script), workload]


@contextlib.contextmanager
def busy_processes(n: int, python: str = sys.executable) -> Iterator[list[int]]:
    """Keeps ``n`` cores busy while the block runs: ``n`` spin-loop processes, killed and
    reaped on the way out (exceptions included). Yields their process ids."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([python, "-c", BUSY_CODE],
                                          stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        if procs:
            time.sleep(0.2)  # past interpreter start-up: spinning when the run begins
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def parse_busy(text: str) -> list[int]:
    """``"0,1"`` -> ``[0, 1]``: distinct counts of busy processes, each >= 0.

    Raises:
        ValueError: not a comma-separated list of distinct non-negative integers.
    """
    try:
        levels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 0 or len(set(levels)) != len(levels):
        raise ValueError(f"--busy takes distinct non-negative integers separated by commas, "
                         f"e.g. 0,1; got {text!r}")
    return levels


def parse_pythons(items: list[str]) -> dict[str, str]:
    """``["keras=/path/python"]`` -> ``{"keras": "/path/python"}``.

    Raises:
        ValueError: an item without ``=``, an unknown framework, or a path that is not an
            executable file.
    """
    out = {}
    for item in items:
        fw, sep, path = item.partition("=")
        if not sep or fw not in FRAMEWORKS:
            raise ValueError(f"--python takes FRAMEWORK=PATH with FRAMEWORK one of "
                             f"{', '.join(FRAMEWORKS)}; got {item!r}")
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ValueError(f"--python {fw}: {path!r} is not an executable file")
        out[fw] = path
    return out


def child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NEXEC_BENCH_SMALL", None)
    env.update(extra or {})
    return env


def run_one(command: list[str], workload: str, threads: int, env: dict[str, str],
            timeout: float, extra_args: tuple[str, ...] = (),
            python: str = sys.executable) -> dict:
    """One workload in one fresh process; its JSON record (or an ``error`` record).

    Args:
        command: The script and its leading arguments (``peer_command``).
    """
    cmd = [python, *command, "--threads", str(threads), *extra_args]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=str(Path(command[0]).parent))
    except subprocess.TimeoutExpired:
        return {"workload": workload, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"workload": workload, "error": f"exit {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"}
    record = json.loads(lines[-1])
    record["process_s"] = wall  # interpreter start to exit, imports included
    return record


def medians(runs: list[dict], frameworks: list[str], workloads: list[str]) -> dict:
    """{workload: {framework: {metric: median}}} over successful runs."""
    out: dict = {}
    for w in workloads:
        out[w] = {}
        for fw in frameworks:
            ok = [r for r in runs if r.get("workload") == w and r.get("framework") == fw
                  and "error" not in r]
            if not ok:
                continue
            row = {"runs": len(ok), "version": ok[0].get("version")}
            for field in [m[0] for m in METRICS] + ["epoch_s", "predict_s", "process_s",
                                                   "final_loss", "compile_s"]:
                values = [r[field] for r in ok if r.get(field) is not None]
                if values:
                    row[field] = statistics.median(values)
                    row[field + "_min"] = min(values)
                    row[field + "_max"] = max(values)
            out[w][fw] = row
    return out


def ratios(table: dict) -> dict:
    """{workload: {peer: {metric: nexec/peer}}}."""
    out: dict = {}
    for w, by_fw in table.items():
        ours = by_fw.get("nexec")
        out[w] = {}
        for fw, row in by_fw.items():
            if fw == "nexec" or ours is None:
                continue
            out[w][fw] = {m: ours[m] / row[m] for m, _, _ in METRICS
                          if m in ours and m in row and row[m]}
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def format_table(table: dict, rat: dict, frameworks: list[str]) -> str:
    peers = [f for f in frameworks if f != "nexec"]
    head = ["workload", "metric", *frameworks, *[f"nexec/{p}" for p in peers]]
    rows = []
    for w, by_fw in table.items():
        for i, (m, label, higher) in enumerate(METRICS):
            cells = [w if i == 0 else "", f"{label} ({'higher' if higher else 'lower'} better)"]
            cells += [_fmt(by_fw.get(f, {}).get(m)) for f in frameworks]
            cells += [(f"{rat[w][p][m]:.2f}" if m in rat.get(w, {}).get(p, {}) else "-")
                      for p in peers]
            rows.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(  # noqa: E731
        str(c).ljust(wd) if j < 2 else str(c).rjust(wd)
        for j, (c, wd) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join(("-" * (wd + 1) + ":") if j >= 2 else "-" * (wd + 2)
                         for j, wd in enumerate(widths)) + "|"
    return "\n".join([line(head), sep, *[line(r) for r in rows]])


def level_name(busy: int) -> str:
    return "quiet" if busy == 0 else f"busy {busy}"


def slowdowns(by_busy: dict[int, dict], levels: list[int]) -> dict:
    """{level: {workload: {framework: {metric: time at level / time at levels[0]}}}} for the
    ``LOAD_METRICS`` of every level but the first (> 1: slower under that load)."""
    base = by_busy[levels[0]]
    out: dict = {}
    for lv in levels[1:]:
        out[lv] = {}
        for w, by_fw in by_busy[lv].items():
            out[lv][w] = {}
            for fw, row in by_fw.items():
                ref = base.get(w, {}).get(fw, {})
                out[lv][w][fw] = {m: row[m] / ref[m] for m, _ in LOAD_METRICS
                                  if row.get(m) and ref.get(m)}
    return out


def format_load_table(by_busy: dict[int, dict], levels: list[int],
                      frameworks: list[str]) -> str:
    """Per workload, metric and framework: the median time at each load level, then the
    slowdown of each level against the first (e.g. quiet | busy 1 | busy 1/quiet)."""
    slow = slowdowns(by_busy, levels)
    names = [level_name(lv) for lv in levels]
    head = ["workload", "metric", "framework", *names,
            *[f"{n}/{names[0]}" for n in names[1:]]]
    rows = []
    workloads = list(dict.fromkeys(w for lv in levels for w in by_busy[lv]))
    for w in workloads:
        first = True
        for m, label in LOAD_METRICS:
            for fw in frameworks:
                vals = [by_busy[lv].get(w, {}).get(fw, {}).get(m) for lv in levels]
                if all(v is None for v in vals):
                    continue
                ratios_ = [slow[lv].get(w, {}).get(fw, {}).get(m) for lv in levels[1:]]
                rows.append([w if first else "", label, fw, *[_fmt(v) for v in vals],
                             *[("-" if r is None else f"{r:.2f}") for r in ratios_]])
                first = False
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(  # noqa: E731
        str(c).ljust(wd) if j < 3 else str(c).rjust(wd)
        for j, (c, wd) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join(("-" * (wd + 1) + ":") if j >= 3 else "-" * (wd + 2)
                         for j, wd in enumerate(widths)) + "|"
    return "\n".join([line(head), sep, *[line(r) for r in rows]])


def plot(rat: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    workloads = [w for w in rat if rat[w]]
    peers = [p for p in FRAMEWORKS if any(p in rat[w] for w in workloads)]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 4.2))
    width = 0.8 / max(len(peers), 1)
    for ax, (m, label, higher) in zip(axes, METRICS):
        for k, p in enumerate(peers):
            xs = [i + (k - (len(peers) - 1) / 2) * width for i in range(len(workloads))]
            vals = [rat[w].get(p, {}).get(m, float("nan")) for w in workloads]
            bars = ax.bar(xs, vals, width, label=f"nexec / {p}")
            for b, v in zip(bars, vals):
                if v == v:
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v),
                                ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xticks(range(len(workloads)), workloads)
        ax.set_title(f"{label}\n(ratio {'>' if higher else '<'} 1: nexec better)", fontsize=9)
    axes[0].set_ylabel("nexec / peer (median of runs)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_tables(medians_by: dict[int, dict], ratios_by: dict[int, dict], levels: list[int],
                 frameworks: list[str]) -> None:
    """The side-by-side table of every load level, then the under-load table (2+ levels)."""
    for lv in levels:
        if len(levels) > 1:
            print(f"\n{level_name(lv)} ({lv} busy process{'es' if lv != 1 else ''} beside "
                  "each run)")
        print(format_table(medians_by[lv], ratios_by[lv], frameworks))
    if len(levels) > 1:
        print(f"\nunder load: median times, and slowdown against {level_name(levels[0])}")
        print(format_load_table(medians_by, levels, frameworks))


def _status(r: dict) -> str:
    if "error" in r:
        return " ".join(r["error"].splitlines()[-1:])
    parts = []
    if r.get("train_samples_per_s") is not None:
        parts.append(f"train {r['train_samples_per_s']:,.0f}/s")
    parts.append(f"predict {r['predict_samples_per_s']:,.0f}/s")
    if r.get("first_epoch_s") is not None:
        parts.append(f"first epoch {r['first_epoch_s']:.2f} s")
    if r.get("peak_rss_mb") is not None:
        parts.append(f"{r['peak_rss_mb']:.0f} MB")
    return ", ".join(parts)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="seed_mlp,wide_mlp,cnn",
                    help=f"comma-separated, of {', '.join(WORKLOADS)} (default: the first "
                         "three)")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                    help=f"comma-separated subset of {','.join(FRAMEWORKS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", default=str(DEFAULT_PEERS),
                    help=f"directory of torch_peer.py/keras_peer.py/ort_peer.py (default "
                         f"{DEFAULT_PEERS})")
    ap.add_argument("--busy", default="0", metavar="N[,N...]",
                    help="busy processes (one spin loop each) beside every run; several "
                         "levels, e.g. 0,1, alternate inside each repeat (default 0)")
    ap.add_argument("--python", action="append", default=[], metavar="FRAMEWORK=PATH",
                    help="run FRAMEWORK's peer under this interpreter (repeatable), e.g. "
                         "keras=/venvs/tf/bin/python; default: this interpreter")
    ap.add_argument("--json", help="write every run, the medians and the ratios here")
    ap.add_argument("--plot", help="bar chart of the ratios (PNG; needs matplotlib)")
    ap.add_argument("--cold-cache", action="store_true",
                    help="every nexec run starts with an empty Numba cache")
    ap.add_argument("--nexec-env", action="append", default=[], metavar="VAR=VALUE",
                    help="extra environment for the nexec runs only (repeatable), e.g. to "
                         "try a threading setting")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--from-json", metavar="FILE",
                    help="run nothing: print the table (and --plot) of an earlier --json")
    return ap


def from_json(path: str, plot_path: str | None) -> int:
    with open(path) as f:
        saved = json.load(f)
    fws = [fw for fw in FRAMEWORKS if fw in saved["versions"]]
    print(saved["title"])
    print("versions: " + ", ".join(f"{fw} {v}" for fw, v in saved["versions"].items()))
    if "by_busy" in saved:
        levels = [int(lv) for lv in saved["busy"]]
        by = {int(k): v for k, v in saved["by_busy"].items()}
        print_tables({lv: by[lv]["medians"] for lv in levels},
                     {lv: by[lv]["ratios"] for lv in levels}, levels, fws)
    else:  # written before --busy existed
        print(format_table(saved["medians"], saved["ratios"], fws))
    if plot_path:
        plot(saved["ratios"], plot_path, saved["title"])
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.from_json:
        return from_json(a.from_json, a.plot)

    workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    try:
        levels = parse_busy(a.busy)
        pythons = parse_pythons(a.python)
    except ValueError as e:
        ap.error(str(e))
    peers = Path(a.peers).expanduser()
    if not peers.is_absolute():
        peers = (Path.cwd() / peers).resolve()
    wanted = [f.strip() for f in a.frameworks.split(",") if f.strip()]
    for f in wanted:
        if f not in FRAMEWORKS:
            ap.error(f"unknown framework {f!r} (known: {', '.join(FRAMEWORKS)})")
    scripts, notes = available(peers, pythons)
    frameworks = [f for f in FRAMEWORKS if f in wanted and f in scripts]
    if (peers / "workloads.py").is_file():
        bad = spec_mismatches(peers / "workloads.py")
        if bad:
            print("workload specs differ; the comparison would be unfair:\n  " +
                  "\n  ".join(bad), file=sys.stderr)
            return 2
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    # A SIGTERM unwinds like an exception, so busy processes are killed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nexec_extra = dict(kv.split("=", 1) for kv in a.nexec_env)
    env = child_env(a.threads)
    nexec_env = child_env(a.threads, nexec_extra)
    python = {fw: pythons.get(fw, sys.executable) for fw in frameworks}

    if "nexec" in frameworks and not a.cold_cache:
        for w in workloads:  # fill Numba's cache; untimed
            r = run_one(peer_command("nexec", w, scripts["nexec"]), w, a.threads, nexec_env,
                        a.timeout, ("--small",), python["nexec"])
            if "error" in r:
                print(f"nexec warm-up of {w} failed: {r['error']}", file=sys.stderr)

    runs: list[dict] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    for rep in range(a.repeats):
        for w in workloads:
            for busy in levels:
                for fw in frameworks:
                    cmd = peer_command(fw, w, scripts[fw])
                    if cmd is None:
                        continue
                    e = nexec_env if fw == "nexec" else env
                    cache = None
                    if fw == "nexec" and a.cold_cache:
                        cache = tempfile.mkdtemp(prefix="nexec-numba-cold-")
                        e = dict(e, NUMBA_CACHE_DIR=cache)
                    with busy_processes(busy):
                        r = run_one(cmd, w, a.threads, e, a.timeout, python=python[fw])
                    if cache:
                        shutil.rmtree(cache, ignore_errors=True)
                    r.setdefault("framework", fw)
                    r["repeat"] = rep
                    r["busy"] = busy
                    runs.append(r)
                    print(f"[{rep + 1}/{a.repeats}] {w:<9} {level_name(busy):<7} {fw:<11} "
                          f"{_status(r)}", file=sys.stderr, flush=True)

    medians_by = {lv: medians([r for r in runs if r["busy"] == lv], frameworks, workloads)
                  for lv in levels}
    ratios_by = {lv: ratios(medians_by[lv]) for lv in levels}
    versions = {fw: next((r.get("version") for r in runs if r.get("framework") == fw
                          and "version" in r), None) for fw in frameworks}
    load = "" if levels == [0] else f", busy processes {'/'.join(map(str, levels))}"
    title = (f"{a.threads} threads, float32, median of {a.repeats} alternating runs{load}, "
             f"{platform.node() or 'this machine'}, {started}")
    print(f"\n{title}")
    print("versions: " + ", ".join(f"{fw} {v}" for fw, v in versions.items()))
    if a.cold_cache:
        print("nexec first epochs with an empty Numba cache (JIT compile included)")
    if nexec_extra:
        print(f"nexec environment: {nexec_extra}")
    if pythons:
        print(f"interpreters: {pythons}")
    shown = [fw for fw in frameworks if any(fw in by_fw for lv in levels
                                            for by_fw in medians_by[lv].values())]
    print_tables(medians_by, ratios_by, levels, shown)
    failed = [r for r in runs if "error" in r]
    for r in failed:
        print(f"FAILED {r['framework']} {r['workload']} ({level_name(r['busy'])}): "
              f"{r['error'].splitlines()[-1:]}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        slow = slowdowns(medians_by, levels)
        with open(a.json, "w") as f:
            json.dump({"title": title, "threads": a.threads, "repeats": a.repeats,
                       "busy": levels, "cold_cache": a.cold_cache, "nexec_env": nexec_extra,
                       "pythons": {fw: os.path.join(*Path(py).parts[-3:])  # no machine folders
                                   for fw, py in pythons.items()},
                       "versions": versions, "notes": notes,
                       "runs": runs,
                       # the first load level (quiet by default), as before --busy
                       "medians": medians_by[levels[0]], "ratios": ratios_by[levels[0]],
                       "by_busy": {str(lv): {"medians": medians_by[lv],
                                             "ratios": ratios_by[lv]} for lv in levels},
                       "slowdown": {str(lv): v for lv, v in slow.items()}}, f, indent=1)
    if a.plot:
        try:
            plot(ratios_by[levels[0]], a.plot, title)
        except ImportError:
            print("note: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
