"""nexec against PyTorch and Keras (TensorFlow backend) on the same workloads, one table.

    python benchmarks/compare.py [--workloads seed_mlp,wide_mlp,cnn] [--repeats 3]
                                 [--threads 2] [--peers ../shared/peers]
                                 [--json out.json] [--plot docs/performance.png]

Every (workload, framework) run is a fresh subprocess (so peak RSS is per workload and
nothing is cached in-process between runs), and runs alternate: for each repeat, for each
workload: nexec, pytorch, keras. Machine load that drifts during the session therefore
hits every framework alike. The table gives medians over the repeats and ratios
nexec/peer.

* PyTorch and Keras run the reference scripts ``torch_peer.py`` / ``keras_peer.py`` of the
  peers directory (default ``../shared/peers`` next to the repository; ``--peers DIR``);
  nexec runs ``benchmarks/nexec_peer.py``, which prints the same JSON fields. A peer that is
  not installed (or whose script is missing) is left out with a note, never faked.
* Same thread count everywhere (``--threads``, default 2): ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` in every child's
  environment, plus ``torch.set_num_threads`` / TF intra-op threads inside the peer scripts.
* float32 data, identical arrays (``make_data``, seed 0); the specs of
  ``benchmarks/workloads.py`` are checked against the peers' ``workloads.py`` first.
* Before measuring, nexec runs each workload once on tiny sizes (untimed), so its first
  epoch is measured with Numba's on-disk cache filled, which is what a user sees on every
  run but the very first after installing. ``--cold-cache`` instead gives every nexec run an
  empty ``NUMBA_CACHE_DIR`` (JIT compilation inside the first epoch).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = REPO.parent / "shared" / "peers"
FRAMEWORKS = ("nexec", "pytorch", "keras")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")

# (JSON field, row label, True when higher is better)
METRICS = [
    ("train_samples_per_s", "train samples/s", True),
    ("predict_samples_per_s", "predict samples/s", True),
    ("first_epoch_s", "first epoch s", False),
    ("peak_rss_mb", "peak RSS MB", False),
]


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


def available(peers: Path) -> tuple[dict[str, Path], list[str]]:
    """Framework -> script that runs it, and notes on what is left out and why."""
    scripts = {"nexec": HERE / "nexec_peer.py"}
    notes = []
    wanted = {"pytorch": ("torch_peer.py", ("torch",)),
              "keras": ("keras_peer.py", ("tensorflow", "keras"))}
    for fw, (script, modules) in wanted.items():
        path = peers / script
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if not path.is_file():
            notes.append(f"{fw}: left out, {path} not found (use --peers DIR)")
        elif missing:
            notes.append(f"{fw}: left out, {' and '.join(missing)} not installed")
        else:
            scripts[fw] = path
    return scripts, notes


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


def run_one(script: Path, workload: str, threads: int, env: dict[str, str],
            timeout: float, extra_args: tuple[str, ...] = ()) -> dict:
    """One workload in one fresh process; its JSON record (or an ``error`` record)."""
    cmd = [sys.executable, str(script), workload, "--threads", str(threads), *extra_args]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=str(script.parent))
    except subprocess.TimeoutExpired:
        return {"workload": workload, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="seed_mlp,wide_mlp,cnn",
                    help="comma-separated, of seed_mlp, wide_mlp, cnn (default: all three)")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                    help="comma-separated subset of nexec,pytorch,keras")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", default=str(DEFAULT_PEERS),
                    help=f"directory of torch_peer.py/keras_peer.py (default {DEFAULT_PEERS})")
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
    a = ap.parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            saved = json.load(f)
        fws = [fw for fw in FRAMEWORKS if fw in saved["versions"]]
        print(saved["title"])
        print("versions: " + ", ".join(f"{fw} {v}" for fw, v in saved["versions"].items()))
        print(format_table(saved["medians"], saved["ratios"], fws))
        if a.plot:
            plot(saved["ratios"], a.plot, saved["title"])
        return 0

    workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in ("seed_mlp", "wide_mlp", "cnn"):
            ap.error(f"unknown workload {w!r} (the peers implement seed_mlp, wide_mlp, cnn)")
    peers = Path(a.peers).expanduser()
    if not peers.is_absolute():
        peers = (Path.cwd() / peers).resolve()
    scripts, notes = available(peers)
    wanted = [f.strip() for f in a.frameworks.split(",") if f.strip()]
    frameworks = [f for f in FRAMEWORKS if f in wanted and f in scripts]
    if (peers / "workloads.py").is_file():
        bad = spec_mismatches(peers / "workloads.py")
        if bad:
            print("workload specs differ; the comparison would be unfair:\n  " +
                  "\n  ".join(bad), file=sys.stderr)
            return 2
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    nexec_extra = dict(kv.split("=", 1) for kv in a.nexec_env)
    env = child_env(a.threads)
    nexec_env = child_env(a.threads, nexec_extra)

    if "nexec" in frameworks and not a.cold_cache:
        for w in workloads:  # fill Numba's cache; untimed
            r = run_one(scripts["nexec"], w, a.threads, nexec_env, a.timeout, ("--small",))
            if "error" in r:
                print(f"nexec warm-up of {w} failed: {r['error']}", file=sys.stderr)

    runs: list[dict] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    for rep in range(a.repeats):
        for w in workloads:
            for fw in frameworks:
                e = nexec_env if fw == "nexec" else env
                cache = None
                if fw == "nexec" and a.cold_cache:
                    cache = tempfile.mkdtemp(prefix="nexec-numba-cold-")
                    e = dict(e, NUMBA_CACHE_DIR=cache)
                r = run_one(scripts[fw], w, a.threads, e, a.timeout)
                if cache:
                    shutil.rmtree(cache, ignore_errors=True)
                r.setdefault("framework", fw)
                r["repeat"] = rep
                runs.append(r)
                status = r.get("error", "").splitlines()[-1:] if "error" in r else \
                    [f"train {r['train_samples_per_s']:,.0f}/s, predict "
                     f"{r['predict_samples_per_s']:,.0f}/s, first epoch "
                     f"{r['first_epoch_s']:.2f} s, {r['peak_rss_mb']:.0f} MB"]
                print(f"[{rep + 1}/{a.repeats}] {w:<9} {fw:<8} {' '.join(status)}",
                      file=sys.stderr, flush=True)

    table = medians(runs, frameworks, workloads)
    rat = ratios(table)
    versions = {fw: next((r.get("version") for r in runs if r.get("framework") == fw
                          and "version" in r), None) for fw in frameworks}
    title = (f"{a.threads} threads, float32, median of {a.repeats} alternating runs, "
             f"{platform.node() or 'this machine'}, {started}")
    print(f"\n{title}")
    print("versions: " + ", ".join(f"{fw} {v}" for fw, v in versions.items()))
    if a.cold_cache:
        print("nexec first epochs with an empty Numba cache (JIT compile included)")
    if nexec_extra:
        print(f"nexec environment: {nexec_extra}")
    print(format_table(table, rat, frameworks))
    failed = [r for r in runs if "error" in r]
    for r in failed:
        print(f"FAILED {r['framework']} {r['workload']}: {r['error'].splitlines()[-1:]}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"title": title, "threads": a.threads, "repeats": a.repeats,
                       "cold_cache": a.cold_cache, "nexec_env": nexec_extra,
                       "versions": versions, "notes": notes, "runs": runs,
                       "medians": table, "ratios": rat}, f, indent=1)
    if a.plot:
        try:
            plot(rat, a.plot, title)
        except ImportError:
            print("note: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
