"""The whole-step compiler: one native call per training step, evaluation step or forward.

A bound :class:`~nexec.runtime.program.Program` is a list of kernel calls over views of a few
memories. The executor's Python loop calls them one by one, paying Numba's dispatch (type
checks, one wrapper per array argument) for each. Here the calls of a mode's phases become
the source of one Python function, compiled with ``njit(nogil=True)``: it takes the
memories (as flat byte arrays) and makes every view inside (slice, ``view(dtype)``,
``reshape``; no allocation), then calls the kernels, which Numba links in as constants. So a
step is one dispatch with a handful of arguments, and the kernels run exactly as in the loop
(same functions, same argument types, no fast-math), which keeps results bit-identical.

Only Numba CPU dispatchers can be compiled (the ``@kernel`` functions and the generated
elementwise kernels); CUDA launchers, ``run_shards`` (intra-op shards) and Python-level steps
(a learning-rate schedule, a plugin-API-1.0 optimizer's ``_python_step``) cannot:
:func:`uncompilable` names them and the executor keeps its loop.

For ``predict`` on in-memory arrays, :func:`generate_pass` puts the forward's calls inside
a loop over a range of batches (rows copied in from the input arrays before the calls and
out into the result arrays after them), so all full batches of a pass are one native call
(:class:`CompiledPass`). For ``fit`` and ``evaluate`` on in-memory arrays,
:func:`generate_epoch` does the same for the train (or evaluate) phases: each batch's rows
are gathered through the epoch's order index from the inputs, targets and sample weights, and
each step's loss and metric slots are copied into per-batch result rows
(:class:`CompiledEpoch`), which the trainer replays as its loop would.

The generated source goes to ``<cache dir>/wholestep/step_<hash>.py``, the hash covering the
program's structure and each kernel's module and source file stamp, and is compiled with
``cache=True`` when every kernel is importable by name, so a later process loads machine
code instead of compiling. The cache directory is ``NEXEC_CACHE_DIR``, else
``$XDG_CACHE_HOME/nexec`` (``~/.cache/nexec``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import typeof
from numba.core.registry import CPUDispatcher

from nexec.errors import NexecError
from nexec.runtime.program import Program, Ref

__all__ = ["CompiledStep", "CompiledPass", "CompiledEpoch", "Generated", "StepCompileError",
           "generate", "generate_pass", "compile_step", "compile_pass", "pass_refusal",
           "uncompilable", "generate_epoch", "compile_epoch", "epoch_refusal",
           "cache_dir", "MODES"]

#: The phases each mode runs, in order.
MODES = {"train": ("forward", "loss", "metric", "backward", "update"),
         "gradients": ("forward", "loss", "metric", "backward"),  # train, split at the update
         "update": ("update",),
         "evaluate": ("forward", "loss", "metric"),
         "forward": ("forward",)}

_GENERATOR_VERSION = 4  # bump when the generated source changes shape


def cache_dir() -> Path:
    """Where generated step modules (and Numba's cache of them) live."""
    base = os.environ.get("NEXEC_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "nexec")
    return Path(base) / "wholestep"


class CompiledStep:
    """One mode of a program as one native function; calling it runs the whole step.

    Attributes:
        fn: The jitted function.
        args: What it is called with (flat byte views of the memories, literal arrays).
        source: The generated Python source.
        cached: Whether Numba may keep its machine code on disk.
    """

    def __init__(self, fn: Any, args: tuple, source: str, cached: bool) -> None:
        self.fn = fn
        self.args = args
        self.source = source
        self.cached = cached

    def __call__(self) -> None:
        self.fn(*self.args)


class CompiledPass:
    """The forward of a program run over many full batches of in-memory arrays in one call.

    Calling it with the sources (one C-contiguous array per model input, of the input
    buffer's dtype), the results (one per output, of the output buffer's dtype) and a range
    of batches ``first``..``last - 1`` copies rows ``b * batch:(b + 1) * batch`` of each
    source into the program's input buffers, runs the forward kernels and copies the output
    buffers into the same rows of the results, batch after batch, all inside one native call.

    Attributes:
        fn: The jitted function.
        args: The memories and literal arrays it takes after sources, results and the range.
        source: The generated Python source.
        cached: Whether Numba may keep its machine code on disk.
    """

    def __init__(self, fn: Any, args: tuple, source: str, cached: bool) -> None:
        self.fn = fn
        self.args = args
        self.source = source
        self.cached = cached

    def __call__(self, sources: list[np.ndarray], results: list[np.ndarray], first: int,
                 last: int) -> None:
        self.fn(*sources, *results, np.int64(first), np.int64(last), *self.args)


class CompiledEpoch(CompiledPass):
    """The train (or evaluate) phases of a program run over many full batches in one call.

    Called as :class:`CompiledPass` is, with the sources (inputs, targets, then sample
    weights, C-contiguous, of their buffers' dtypes) followed by the epoch's row order (an
    int64 index array over all rows), and the results: a float64 ``(batches, losses)``
    array, then one ``(batches, size)`` array per metric slot, of its dtype. For batch
    ``b`` of ``first``..``last - 1`` it gathers rows ``order[b * batch:(b + 1) * batch]``
    of each source into the program's buffers, runs the mode's kernels and copies the loss
    and metric slots into row ``b - first`` of the results.
    """


def _calls(prog: Program, mode: str) -> list:
    phases = MODES[mode]
    return [ins for ins in prog.instructions if ins.phase in phases]


def _kernel(fn: Any) -> Any:
    """The Numba kernel a call runs: ``fn``, or the kernel a Python wrapper that only
    renames its errors exposes as ``__wrapped__`` (the Embedding kernels; their ids are
    checked before any kernel runs, so the compiled call drops only the renaming)."""
    inner = getattr(fn, "__wrapped__", None)
    return inner if not isinstance(fn, CPUDispatcher) and isinstance(inner, CPUDispatcher) \
        else fn


def _importable(fn: Any) -> str | None:
    """``module:name`` when ``fn`` is the module-level object of that name, else ``None``."""
    py = getattr(fn, "py_func", None)
    mod = sys.modules.get(getattr(py, "__module__", None) or "")
    name = getattr(py, "__name__", "")
    if mod is not None and getattr(mod, name, None) is fn:
        return f"{mod.__name__}:{name}"
    return None


def _describe(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _literal(value: Any) -> str | None:
    """``value`` as Python source Numba types exactly as the value itself, else ``None``."""
    # Not bare ``1``/``True``: Numba would type those as literals and compile every kernel
    # again for them; a call made from Python passes them as int64 and boolean.
    if value is None:
        return "None"
    if isinstance(value, bool):
        return f"np.bool_({value!r})"
    if isinstance(value, int):
        return f"np.int64({value!r})" if -2**63 <= value < 2**63 else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        v = value.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return f"np.{value.dtype.name}({v!r})"
    return None


def uncompilable(prog: Program, mode: str = "train") -> list[str]:
    """What keeps ``mode`` of ``prog`` from compiling, one line per reason (empty: it can)."""
    out = []
    for ins in _calls(prog, mode):
        if not isinstance(_kernel(ins.fn), CPUDispatcher):
            out.append(f"{ins.phase}: {_describe(ins.fn)} is not a Numba CPU kernel")
            continue
        for a in ins.args:
            if isinstance(a, (Ref, np.ndarray)) or _literal(a) is not None:
                continue
            out.append(f"{ins.phase}: {_describe(ins.fn)} takes {type(a).__name__} "
                       f"{a!r:.60}, which is neither an array nor a number")
    return out


def _flat_bytes(base: Any) -> np.ndarray | None:
    """A memory as one contiguous byte array (``None`` when it is not contiguous)."""
    if not isinstance(base, np.ndarray) or not base.flags.c_contiguous:
        return None
    return base.reshape(-1).view(np.uint8)


def _generate(prog: Program, mode: str, pass_views: bool = False, over_batches: bool = False,
              over_epoch: bool = False) -> tuple[str, tuple, dict[str, Any], list[str], bool]:
    """Source, call arguments, kernel globals, structure key and cacheability.

    With ``over_batches`` the function first takes one source per program input and one
    result per output and a range of batches, and runs the calls once per batch between
    copying the batch's rows in and the outputs out (:class:`CompiledPass`). With
    ``over_epoch`` it takes the sources of inputs, targets and weights, the row order and
    the loss and metric results, and gathers rows in and slots out (:class:`CompiledEpoch`).
    """
    params: list[str] = []  # parameter names, in call order
    args: list[Any] = []
    memory_param: dict[str, str] = {}
    views: dict[Ref, str] = {}
    literal_param: dict[int, str] = {}
    kernels: dict[int, str] = {}
    kernel_objs: dict[str, Any] = {}
    imports: list[str] = []
    cacheable = True
    body_views: list[str] = []
    body_calls: list[str] = []
    key: list[str] = [f"v{_GENERATOR_VERSION}", mode, f"views={pass_views}",
                      f"pass={over_batches}", f"epoch={over_epoch}"]

    def argument(a: Any) -> str:
        name = literal_param.get(id(a))
        if name is None:
            name = literal_param[id(a)] = f"x{len(literal_param)}"
            params.append(name)
            args.append(a)
            key.append(f"{name}:array{a.shape}{a.strides}{a.dtype.str}")
        return name

    def view(r: Ref) -> str:
        if r in views:
            return views[r]
        base = prog.memories[r.memory]
        a = r.view(base)
        flat = _flat_bytes(base)
        if pass_views or not a.flags.c_contiguous or flat is None:
            name = argument(a)  # a strided view: passed as it is (same type as in the loop)
            views[r] = name
            return name
        mem = memory_param.get(r.memory)
        if mem is None:
            mem = memory_param[r.memory] = f"m{len(memory_param)}"
            params.append(mem)
            args.append(flat)
            key.append(f"{mem}:{flat.nbytes}")
        name = views[r] = f"v{len(views)}"
        end = r.offset + a.nbytes
        shape = "" if a.ndim == 1 else f".reshape({tuple(a.shape)!r})"  # 1-D: view is enough
        body_views.append(f"    {name} = {mem}[{r.offset}:{end}].view(np.{a.dtype.name}){shape}")
        key.append(f"{name}={mem}[{r.offset}:{end}]{a.dtype.str}{a.shape}")
        return name

    for ins in _calls(prog, mode):
        fn = _kernel(ins.fn)
        k = kernels.get(id(fn))
        if k is None:
            k = kernels[id(fn)] = f"k{len(kernels)}"
            where = _importable(fn)
            if where is None:
                cacheable = False
                kernel_objs[k] = fn
                key.append(f"{k}=<{_describe(fn)} {id(fn)}>")
            else:
                module, name = where.split(":")
                imports.append(f"from {module} import {name} as {k}")
                src = getattr(sys.modules[module], "__file__", None) or ""
                stamp = os.stat(src) if src and os.path.exists(src) else None
                key.append(f"{k}={where}@{stamp.st_mtime_ns if stamp else 0}"
                           f":{stamp.st_size if stamp else 0}")
        parts = []
        for a in ins.args:
            if isinstance(a, Ref):
                parts.append(view(a))
            elif isinstance(a, np.ndarray):
                parts.append(argument(a))
            else:
                lit = _literal(a)
                if lit is None:
                    raise ValueError(f"cannot compile argument {a!r:.60} of {_describe(ins.fn)}")
                parts.append(lit)
        body_calls.append(f"    {k}({', '.join(parts)})")
        key.append(body_calls[-1])
    lead: list[str] = []
    if over_epoch:
        lead, body_calls = _epoch_body(prog, view, memory_param, body_calls)
        key += body_calls
    if over_batches:
        ins_, outs_ = prog.places["inputs"], prog.places["outputs"]

        def flat(r: Ref) -> str | None:
            """A 1-D view of the elements of a contiguous buffer ``r`` (``None``: none)."""
            base = prog.memories[r.memory]
            a = r.view(base)
            mem = memory_param.get(r.memory) if a.flags.c_contiguous and not pass_views \
                and _flat_bytes(base) is not None else None
            if mem is None:
                return None
            name = f"f{len(flat_names)}"
            flat_names.append(name)
            flats.append(f"    {name} = {mem}[{r.offset}:{r.offset + a.nbytes}]"
                         f".view(np.{a.dtype.name})")
            return name

        def copy(dst: str, src: str, fdst: str | None, fsrc: str | None, per_row: int,
                 into: bool) -> list[str]:
            """Copies one batch of rows: an explicit loop over the flat elements (a plain
            loop LLVM vectorises; a multi-dimensional slice assignment is much slower)."""
            if fdst is None:
                return [f"        {dst}[:] = {src}[lo:hi]" if into
                        else f"        {dst}[lo:hi] = {src}"]
            at = "lo * " + str(per_row)
            body = f"{fdst}[j] = {fsrc}[{at} + j]" if into else f"{fsrc}[{at} + j] = {fdst}[j]"
            return [f"        for j in range({fdst}.size):", f"            {body}"]

        flats: list[str] = []
        flat_names: list[str] = []
        copy_in: list[str] = []
        copy_out: list[str] = []
        for i, r in enumerate(ins_):
            name, fl = view(r), flat(r)
            if fl is not None:
                flats.append(f"    fs{i} = s{i}.reshape(s{i}.size)")
            copy_in += copy(name, f"s{i}", fl, f"fs{i}", int(np.prod(r.shape[1:])), True)
        for i, r in enumerate(outs_):
            name, fl = view(r), flat(r)
            if fl is not None:
                flats.append(f"    fr{i} = r{i}.reshape(r{i}.size)")
            copy_out += copy(f"r{i}", name, fl, f"fr{i}", int(np.prod(r.shape[1:])), False)
        lead = [f"s{i}" for i in range(len(ins_))] + [f"r{i}" for i in range(len(outs_))] \
            + ["first", "last"]
        body_calls = [*flats,
                      "    for b in range(first, last):",
                      f"        lo = b * {prog.batch}",
                      f"        hi = lo + {prog.batch}",
                      *copy_in, *("    " + c for c in body_calls), *copy_out]
        key += body_calls
    source = "\n".join([
        '"""Generated by nexec.runtime.wholestep: one program step as one function."""',
        "import numpy as np",
        "from numba import njit",
        *imports,
        "",
        "",
        f"@njit(nogil=True, cache={cacheable})",
        f"def step({', '.join(lead + params)}):",
        *body_views,
        *body_calls,
        "    return 0",
        "",
    ])
    return source, tuple(args), kernel_objs, key, cacheable


def _epoch_body(prog: Program, view: Any, memory_param: dict[str, str], calls: list[str]
                ) -> tuple[list[str], list[str]]:
    """The lead parameters and body of an epoch function (:class:`CompiledEpoch`): per batch,
    flat gathering loops into the input, target and weight buffers, the calls, and the slot
    copies. Every buffer is a contiguous place in a memory (:func:`epoch_refusal`)."""
    places = prog.places
    buffers = [*places["inputs"], *places["targets"], *places["weights"]]
    lead_, body = [], []
    for i, r in enumerate(buffers):
        view(r)  # the memory becomes a parameter
        a = r.view(prog.memories[r.memory])
        mem = memory_param[r.memory]
        body.append(f"    g{i} = {mem}[{r.offset}:{r.offset + a.nbytes}].view(np.{a.dtype.name})")
        body.append(f"    fs{i} = s{i}.reshape(s{i}.size)")
        lead_.append(f"s{i}")
    lead_ += ["order", "rl"]
    slots = [s for _, _, s in places["loss_slots"]]
    metrics = [s for _, _, s, _ in places["metric_slots"]]
    lead_ += [f"q{m}" for m in range(len(metrics))] + ["first", "last"]
    body += ["    for b in range(first, last):",
             f"        lo = b * {prog.batch}",
             "        o = b - first"]
    for i, r in enumerate(buffers):
        per = int(np.prod(r.shape[1:]))
        body += [f"        for t in range({prog.batch}):",  # a loop LLVM vectorises
                 f"            at = order[lo + t] * {per}",
                 f"            for j in range({per}):",
                 f"                g{i}[t * {per} + j] = fs{i}[at + j]"]
    body += ["    " + c for c in calls]
    for k, r in enumerate(slots):
        body.append(f"        rl[o, {k}] = {view(r)}[0]")
    for m, r in enumerate(metrics):
        body += [f"        for j in range({int(r.shape[0])}):",
                 f"            q{m}[o, j] = {view(r)}[j]"]
    return lead_, body


class StepCompileError(NexecError, ValueError):
    """A step was asked to compile (``jit_step=True``) but has calls that cannot be."""


@dataclass
class Generated:
    """The generated module of one program mode, before compiling it.

    Attributes:
        source: The Python source.
        args: What the step function is called with.
        kernels: Kernel globals that cannot be imported by name (set on the module).
        path: Where the source goes (its name carries the hash of the structure).
        cacheable: Whether Numba keeps the machine code on disk (every kernel importable).
    """

    source: str
    args: tuple
    kernels: dict[str, Any]
    path: Path
    cacheable: bool
    epoch: bool = False  #: an epoch function (:class:`CompiledEpoch`), not a pass

    def on_disk(self) -> bool:
        """Whether a previous process left Numba's compiled code for this step on disk."""
        folder = self.path.parent / "__pycache__"
        return self.cacheable and any(folder.glob(f"{self.path.stem}.step-*.nbi"))

    def compile(self, lead: tuple = ()) -> Any:
        """Writes the module, imports it and compiles (or loads) the step function.

        Args:
            lead: For a pass (:func:`generate_pass`), example sources and results, whose
                types the function is compiled for (others compile on first call).

        Returns:
            A :class:`CompiledStep`, or a :class:`CompiledPass` for a pass
            (:class:`CompiledEpoch` for an epoch).
        """
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != self.source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(self.source)
            os.replace(tmp, path)  # atomic: another process may read it at the same time
        name = f"nexec_wholestep_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module.__dict__.update(self.kernels)  # kernels made at run time (not importable)
        # Numba's cache finds the function's globals again by module name when it loads.
        sys.modules[name] = module
        spec.loader.exec_module(module)
        # Compile (or load) now for exactly these argument types, without running a step.
        if lead:
            module.step.compile(tuple(typeof(a) for a in (*lead, np.int64(0), np.int64(0),
                                                            *self.args)))
            kind = CompiledEpoch if self.epoch else CompiledPass
            return kind(module.step, self.args, self.source, self.cacheable)
        module.step.compile(tuple(typeof(a) for a in self.args))
        return CompiledStep(module.step, self.args, self.source, self.cacheable)


def generate(prog: Program, mode: str = "train", directory: Path | None = None,
             pass_views: bool = False) -> Generated:
    """The module that runs ``mode``'s phases of ``prog`` as one function.

    Args:
        prog: A materialised program (its instructions' arrays are :class:`Ref` s).
        mode: ``"train"``, ``"evaluate"`` or ``"forward"`` (:data:`MODES`).
        directory: Where the generated module goes (default :func:`cache_dir`).
        pass_views: Pass every distinct view as an argument instead of the memories (one
            unboxing per view per call; measured slower, kept for comparison).

    Raises:
        StepCompileError: The program has calls that cannot be compiled (the message names
            them).
    """
    reasons = uncompilable(prog, mode)
    if reasons:
        raise StepCompileError(f"this {mode} step cannot be compiled into one native call "
                               "(use jit_step='auto' or False to keep the Python loop):\n  "
                               + "\n  ".join(reasons))
    source, args, kernel_objs, key, cacheable = _generate(prog, mode, pass_views)
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
    folder = directory or cache_dir()
    return Generated(source, args, kernel_objs, folder / f"step_{digest}.py", cacheable)


def compile_step(prog: Program, mode: str = "train", directory: Path | None = None
                 ) -> CompiledStep:
    """:func:`generate` then :meth:`Generated.compile`: ``mode`` of ``prog`` as one call."""
    return generate(prog, mode, directory).compile()


def pass_refusal(prog: Program) -> list[str]:
    """What keeps ``prog``'s forward from running over batches in one call (empty: nothing):
    its calls (:func:`uncompilable`), or an input or output that lives in no memory."""
    reasons = uncompilable(prog, "forward")
    for what in ("inputs", "outputs"):
        for i, r in enumerate(prog.places.get(what, [])):
            if not isinstance(r, Ref):
                reasons.append(f"{what[:-1]} {i} is in no memory of the program")
    return reasons


def generate_pass(prog: Program, directory: Path | None = None) -> Generated:
    """The module whose function runs ``prog``'s forward over a range of full batches of
    in-memory arrays (:class:`CompiledPass`): one native call per predict pass.

    Raises:
        StepCompileError: :func:`pass_refusal` names a reason.
    """
    reasons = pass_refusal(prog)
    if reasons:
        raise StepCompileError("this forward cannot be compiled into one native call per "
                               "pass:\n  " + "\n  ".join(reasons))
    source, args, kernel_objs, key, cacheable = _generate(prog, "forward", over_batches=True)
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
    folder = directory or cache_dir()
    return Generated(source, args, kernel_objs, folder / f"pass_{digest}.py", cacheable)


def compile_pass(prog: Program, sources: list[np.ndarray], results: list[np.ndarray],
                 directory: Path | None = None) -> CompiledPass:
    """:func:`generate_pass` compiled for sources and results like these."""
    return generate_pass(prog, directory).compile((*sources, *results))


def epoch_refusal(prog: Program, mode: str = "train") -> list[str]:
    """What keeps ``mode`` (``"train"`` or ``"evaluate"``) of ``prog`` from running over
    batches in one call (empty: nothing): its calls (:func:`uncompilable`), or an input,
    target, sample-weight buffer or result slot that is not a contiguous place in a memory."""
    reasons = uncompilable(prog, mode)
    places = prog.places
    named = [(what, r) for what in ("inputs", "targets", "weights")
             for r in places.get(what, [])]
    named += [("loss slot", s) for _, _, s in places.get("loss_slots", [])]
    named += [("metric slot", s) for _, _, s, _ in places.get("metric_slots", [])]
    for what, r in named:
        if not isinstance(r, Ref) or _flat_bytes(prog.memories[r.memory]) is None \
                or not r.view(prog.memories[r.memory]).flags.c_contiguous:
            reasons.append(f"a buffer of {what} is not a contiguous place in a host memory")
    return reasons


def generate_epoch(prog: Program, mode: str = "train", directory: Path | None = None
                   ) -> Generated:
    """The module whose function runs ``mode``'s phases of ``prog`` over a range of full
    batches gathered from in-memory arrays (:class:`CompiledEpoch`): one native call for
    the full batches of a ``fit`` epoch (``"train"``) or an ``evaluate`` (``"evaluate"``).

    Raises:
        StepCompileError: :func:`epoch_refusal` names a reason.
    """
    if mode not in ("train", "evaluate"):
        raise ValueError(f"an epoch runs mode 'train' or 'evaluate', not {mode!r}")
    reasons = epoch_refusal(prog, mode)
    if reasons:
        raise StepCompileError(f"this {mode} step cannot be compiled into one native call per "
                               "epoch:\n  " + "\n  ".join(reasons))
    source, args, kernel_objs, key, cacheable = _generate(prog, mode, over_epoch=True)
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
    folder = directory or cache_dir()
    return Generated(source, args, kernel_objs, folder / f"epoch_{digest}.py", cacheable,
                     epoch=True)


def compile_epoch(prog: Program, mode: str, sources: list[np.ndarray],
                  results: list[np.ndarray], directory: Path | None = None) -> CompiledEpoch:
    """:func:`generate_epoch` compiled for sources (the order last) and results like these."""
    return generate_epoch(prog, mode, directory).compile((*sources, *results))
