"""The whole-step compiler: one native call per training step, evaluation step or forward.

A bound :class:`~nexec.runtime.program.Program` is a list of kernel calls over views of a few
memories. The executor's Python loop calls them one by one, paying Numba's dispatch (type
checks, one wrapper per array argument) for each. Here the calls of a mode's phases become
the source of one Python function, compiled as a ``kernels/jit.py`` kernel: it takes the
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
(:class:`CompiledEpoch`), which the trainer replays as its loop would. The last, shorter
batch's program (the tail: other static shapes, the same arena) can be generated into the
same function as a second body after the loop, so a whole pass or epoch is one call.

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
from nexec.kernels.jit import cache_root, write_module
from nexec.runtime.program import Program, Ref

__all__ = ["CompiledStep", "CompiledPass", "CompiledEpoch", "Generated", "StepCompileError",
           "generate", "generate_pass", "compile_step", "compile_pass", "pass_refusal",
           "uncompilable", "importable", "generate_epoch", "compile_epoch", "epoch_refusal",
           "cache_dir", "MODES"]

#: The phases each mode runs, in order.
MODES = {"train": ("forward", "loss", "metric", "backward", "update"),
         "gradients": ("forward", "loss", "metric", "backward"),  # train, split at the update
         "update": ("update",),
         "evaluate": ("forward", "loss", "metric"),
         "forward": ("forward",)}

_GENERATOR_VERSION = 5  # bump when the generated source changes shape


def cache_dir() -> Path:
    """Where generated step modules (and Numba's cache of them) live."""
    return cache_root() / "wholestep"


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
    Compiled with a tail program (the last, shorter batch's), a call with ``tail`` true then
    runs the tail program on rows ``last * batch:last * batch + tail_rows`` in the same call.

    Attributes:
        fn: The jitted function.
        args: The memories and literal arrays it takes after sources, results and the range.
        source: The generated Python source.
        cached: Whether Numba may keep its machine code on disk.
        tail: The tail program compiled in (``None``: none; ``tail`` must then be false).
    """

    def __init__(self, fn: Any, args: tuple, source: str, cached: bool,
                 tail: Program | None = None) -> None:
        self.fn = fn
        self.args = args
        self.source = source
        self.cached = cached
        self.tail = tail
        self._with_tail = (np.bool_(True),) if tail is not None else ()
        self._without_tail = (np.bool_(False),) if tail is not None else ()

    def __call__(self, sources: list[np.ndarray], results: list[np.ndarray], first: int,
                 last: int, tail: bool = False) -> None:
        if tail and self.tail is None:
            raise ValueError("this pass was compiled without a tail program")
        self.fn(*sources, *results, np.int64(first), np.int64(last),
                *(self._with_tail if tail else self._without_tail), *self.args)


class CompiledEpoch(CompiledPass):
    """The train (or evaluate) phases of a program run over many full batches in one call.

    Called as :class:`CompiledPass` is, with the sources (inputs, targets, then sample
    weights, C-contiguous, of their buffers' dtypes) followed by the epoch's row order (an
    int64 index array over all rows), and the results: a float64 ``(batches, losses)``
    array, then one ``(batches, size)`` array per metric slot, of its dtype. For batch
    ``b`` of ``first``..``last - 1`` it gathers rows ``order[b * batch:(b + 1) * batch]``
    of each source into the program's buffers, runs the mode's kernels and copies the loss
    and metric slots into row ``b - first`` of the results. With ``tail`` true, the tail
    program then runs on rows ``order[last * batch:last * batch + tail_rows]``, its slots
    copied into row ``last - first``.
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


def importable(fn: Any) -> str | None:
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


def _generate(progs: list[Program], mode: str, pass_views: bool = False,
              over_batches: bool = False, over_epoch: bool = False
              ) -> tuple[str, tuple, dict[str, Any], list[str], bool]:
    """Source, call arguments, kernel globals, structure key and cacheability.

    ``progs`` is one program, or for a pass or an epoch the full batches' program and the
    program of the last, shorter batch (its tail, run once after the full batches when the
    function's ``tail`` argument is true). Memories the programs share (the arena, the
    parameters, the slots) are one parameter.

    With ``over_batches`` the function first takes one source per program input and one
    result per output and a range of batches, and runs the calls once per batch between
    copying the batch's rows in and the outputs out (:class:`CompiledPass`). With
    ``over_epoch`` it takes the sources of inputs, targets and weights, the row order and
    the loss and metric results, and gathers rows in and slots out (:class:`CompiledEpoch`).
    """
    params: list[str] = []  # parameter names, in call order
    args: list[Any] = []
    memory_param: dict[int, str] = {}  # id of a memory -> its parameter
    views: dict[tuple[int, Ref], str] = {}
    literal_param: dict[int, str] = {}
    kernels: dict[int, str] = {}
    kernel_objs: dict[str, Any] = {}
    imports: list[str] = []
    cacheable = True
    body_views: list[str] = []
    key: list[str] = [f"v{_GENERATOR_VERSION}", mode, f"views={pass_views}",
                      f"pass={over_batches}", f"epoch={over_epoch}",
                      f"programs={[p.batch for p in progs]}"]

    def argument(a: Any) -> str:
        name = literal_param.get(id(a))
        if name is None:
            name = literal_param[id(a)] = f"x{len(literal_param)}"
            params.append(name)
            args.append(a)
            key.append(f"{name}:array{a.shape}{a.strides}{a.dtype.str}")
        return name

    def memory(p: int, r: Ref) -> str | None:
        """The parameter of ``r``'s memory as flat bytes (``None``: not contiguous)."""
        base = progs[p].memories[r.memory]
        flat = _flat_bytes(base)
        if flat is None:
            return None
        mem = memory_param.get(id(base))
        if mem is None:
            mem = memory_param[id(base)] = f"m{len(memory_param)}"
            params.append(mem)
            args.append(flat)
            key.append(f"{mem}:{flat.nbytes}")
        return mem

    def view(p: int, r: Ref) -> str:
        if (p, r) in views:
            return views[(p, r)]
        a = r.view(progs[p].memories[r.memory])
        mem = None if pass_views or not a.flags.c_contiguous else memory(p, r)
        if mem is None:
            name = argument(a)  # a strided view: passed as it is (same type as in the loop)
            views[(p, r)] = name
            return name
        name = views[(p, r)] = f"v{len(views)}"
        end = r.offset + a.nbytes
        shape = "" if a.ndim == 1 else f".reshape({tuple(a.shape)!r})"  # 1-D: view is enough
        body_views.append(f"    {name} = {mem}[{r.offset}:{end}].view(np.{a.dtype.name}){shape}")
        key.append(f"{name}={mem}[{r.offset}:{end}]{a.dtype.str}{a.shape}")
        return name

    def calls(p: int) -> list[str]:
        nonlocal cacheable
        out = []
        for ins in _calls(progs[p], mode):
            fn = _kernel(ins.fn)
            k = kernels.get(id(fn))
            if k is None:
                k = kernels[id(fn)] = f"k{len(kernels)}"
                where = importable(fn)
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
                    parts.append(view(p, a))
                elif isinstance(a, np.ndarray):
                    parts.append(argument(a))
                else:
                    lit = _literal(a)
                    if lit is None:
                        raise ValueError(f"cannot compile argument {a!r:.60} of "
                                         f"{_describe(ins.fn)}")
                    parts.append(lit)
            out.append(f"    {k}({', '.join(parts)})")
            key.append(out[-1])
        return out

    per_prog = [calls(p) for p in range(len(progs))]
    body_calls = per_prog[0]
    lead: list[str] = []
    if over_epoch:
        lead, body_calls = _epoch_body(progs, view, memory, per_prog)
        key += body_calls
    if over_batches:
        lead, body_calls = _pass_body(progs, view, memory, per_prog, pass_views)
        key += body_calls
    source = "\n".join([
        '"""Generated by nexec.runtime.wholestep: one program step as one function."""',
        "import numpy as np",
        "from nexec.kernels.jit import kernel, uncached_kernel",
        *imports,
        "",
        "",
        "@kernel" if cacheable else "@uncached_kernel",
        f"def step({', '.join(lead + params)}):",
        *body_views,
        *body_calls,
        "    return 0",
        "",
    ])
    return source, tuple(args), kernel_objs, key, cacheable


def _range_lead(progs: list[Program]) -> list[str]:
    """The batch range parameters, and ``tail`` when a tail program is compiled in."""
    return ["first", "last"] + (["tail"] if len(progs) > 1 else [])


def _blocks(progs: list[Program], block: Any) -> list[str]:
    """The loop over the full batches, then (with a tail program) the tail's block:
    ``block(p, indent)`` gives a program's lines after ``lo`` and ``o`` are set."""
    batch = progs[0].batch
    body = ["    for b in range(first, last):",
            f"        lo = b * {batch}",
            "        o = b - first",
            *block(0, "        ")]
    if len(progs) > 1:
        body += ["    if tail:",
                 f"        lo = last * {batch}",
                 "        o = last - first",
                 *block(1, "        ")]
    return body


def _pass_body(progs: list[Program], view: Any, memory: Any, per_prog: list[list[str]],
               pass_views: bool) -> tuple[list[str], list[str]]:
    """The lead parameters and body of a pass function (:class:`CompiledPass`): per batch,
    rows copied into the input buffers, the forward's calls, outputs copied out."""
    heads: list[str] = []
    flat_names: list[str] = []
    made: set[str] = set()

    def flat(p: int, r: Ref) -> str | None:
        """A 1-D view of the elements of a contiguous buffer ``r`` (``None``: none)."""
        a = r.view(progs[p].memories[r.memory])
        mem = memory(p, r) if a.flags.c_contiguous and not pass_views else None
        if mem is None:
            return None
        name = f"f{len(flat_names)}"
        flat_names.append(name)
        heads.append(f"    {name} = {mem}[{r.offset}:{r.offset + a.nbytes}]"
                     f".view(np.{a.dtype.name})")
        return name

    def whole(name: str) -> None:
        if name not in made:
            made.add(name)
            heads.append(f"    f{name} = {name}.reshape({name}.size)")

    def copy(indent: str, dst: str, src: str, fdst: str | None, fsrc: str, per_row: int,
             into: bool, rows: int) -> list[str]:
        """Copies one batch of rows: an explicit loop over the flat elements (a plain
        loop LLVM vectorises; a multi-dimensional slice assignment is much slower)."""
        if fdst is None:
            return [f"{indent}{dst}[:] = {src}[lo:lo + {rows}]" if into
                    else f"{indent}{dst}[lo:lo + {rows}] = {src}"]
        at = "lo * " + str(per_row)
        body = f"{fdst}[j] = {fsrc}[{at} + j]" if into else f"{fsrc}[{at} + j] = {fdst}[j]"
        return [f"{indent}for j in range({fdst}.size):", f"{indent}    {body}"]

    def block(p: int, indent: str) -> list[str]:
        prog = progs[p]
        out = []
        for i, r in enumerate(prog.places["inputs"]):
            name, fl = view(p, r), flat(p, r)
            if fl is not None:
                whole(f"s{i}")
            out += copy(indent, name, f"s{i}", fl, f"fs{i}", int(np.prod(r.shape[1:])), True,
                        prog.batch)
        out += [indent + c.lstrip() for c in per_prog[p]]
        for i, r in enumerate(prog.places["outputs"]):
            name, fl = view(p, r), flat(p, r)
            if fl is not None:
                whole(f"r{i}")
            out += copy(indent, f"r{i}", name, fl, f"fr{i}", int(np.prod(r.shape[1:])), False,
                        prog.batch)
        return out

    body = _blocks(progs, block)
    n_in, n_out = len(progs[0].places["inputs"]), len(progs[0].places["outputs"])
    lead = [f"s{i}" for i in range(n_in)] + [f"r{i}" for i in range(n_out)] \
        + _range_lead(progs)
    return lead, heads + body


def _epoch_body(progs: list[Program], view: Any, memory: Any, per_prog: list[list[str]]
                ) -> tuple[list[str], list[str]]:
    """The lead parameters and body of an epoch function (:class:`CompiledEpoch`): per batch,
    flat gathering loops into the input, target and weight buffers, the calls, and the slot
    copies. Every buffer is a contiguous place in a memory (:func:`epoch_refusal`)."""
    heads: list[str] = []

    def buffers(prog: Program) -> list[Ref]:
        places = prog.places
        return [*places["inputs"], *places["targets"], *places["weights"]]

    for i in range(len(buffers(progs[0]))):
        heads.append(f"    fs{i} = s{i}.reshape(s{i}.size)")
    gathers: list[list[str]] = []
    for p, prog in enumerate(progs):
        names = []
        for i, r in enumerate(buffers(prog)):
            view(p, r)
            a = r.view(prog.memories[r.memory])
            name = f"g{p}_{i}"
            heads.append(f"    {name} = {memory(p, r)}[{r.offset}:{r.offset + a.nbytes}]"
                         f".view(np.{a.dtype.name})")
            names.append(name)
        gathers.append(names)

    def block(p: int, indent: str) -> list[str]:
        prog = progs[p]
        out = []
        for i, r in enumerate(buffers(prog)):
            per = int(np.prod(r.shape[1:]))
            out += [f"{indent}for t in range({prog.batch}):",  # a loop LLVM vectorises
                    f"{indent}    at = order[lo + t] * {per}",
                    f"{indent}    for j in range({per}):",
                    f"{indent}        {gathers[p][i]}[t * {per} + j] = fs{i}[at + j]"]
        out += [indent + c.lstrip() for c in per_prog[p]]
        for k, (_, _, r) in enumerate(prog.places["loss_slots"]):
            out.append(f"{indent}rl[o, {k}] = {view(p, r)}[0]")
        for m, (_, _, r, _) in enumerate(prog.places["metric_slots"]):
            out += [f"{indent}for j in range({int(r.shape[0])}):",
                    f"{indent}    q{m}[o, j] = {view(p, r)}[j]"]
        return out

    body = _blocks(progs, block)
    n_metrics = len(progs[0].places["metric_slots"])
    lead = [f"s{i}" for i in range(len(buffers(progs[0])))] + ["order", "rl"] \
        + [f"q{m}" for m in range(n_metrics)] + _range_lead(progs)
    return lead, heads + body


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
    tail: Program | None = None  #: the tail program compiled in (a pass or an epoch)

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
        write_module(path, self.source)
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
            flag = (np.bool_(False),) if self.tail is not None else ()
            module.step.compile(tuple(typeof(a) for a in (*lead, np.int64(0), np.int64(0),
                                                            *flag, *self.args)))
            kind = CompiledEpoch if self.epoch else CompiledPass
            return kind(module.step, self.args, self.source, self.cacheable, self.tail)
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
    source, args, kernel_objs, key, cacheable = _generate([prog], mode, pass_views)
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
    folder = directory or cache_dir()
    return Generated(source, args, kernel_objs, folder / f"step_{digest}.py", cacheable)


def compile_step(prog: Program, mode: str = "train", directory: Path | None = None
                 ) -> CompiledStep:
    """:func:`generate` then :meth:`Generated.compile`: ``mode`` of ``prog`` as one call."""
    return generate(prog, mode, directory).compile()


def pass_refusal(prog: Program, tail: Program | None = None) -> list[str]:
    """What keeps ``prog``'s forward (with ``tail``'s, the last shorter batch's, in the same
    function) from running over batches in one call (empty: nothing): its calls
    (:func:`uncompilable`), or an input or output that lives in no memory."""
    if tail is not None:
        return pass_refusal(prog) + [f"tail: {r}" for r in pass_refusal(tail)]
    reasons = uncompilable(prog, "forward")
    for what in ("inputs", "outputs"):
        for i, r in enumerate(prog.places.get(what, [])):
            if not isinstance(r, Ref):
                reasons.append(f"{what[:-1]} {i} is in no memory of the program")
    return reasons


def generate_pass(prog: Program, directory: Path | None = None,
                  tail: Program | None = None) -> Generated:
    """The module whose function runs ``prog``'s forward over a range of full batches of
    in-memory arrays (:class:`CompiledPass`): one native call per predict pass.

    Args:
        prog: The full batches' program.
        directory: Where the generated module goes (default :func:`cache_dir`).
        tail: The program of the last, shorter batch (of the same executor, so of the same
            arena), compiled into the same function; ``None``: none.

    Raises:
        StepCompileError: :func:`pass_refusal` names a reason (for either program).
    """
    progs = [prog] if tail is None else [prog, tail]
    reasons = pass_refusal(prog, tail)
    if reasons:
        raise StepCompileError("this forward cannot be compiled into one native call per "
                               "pass:\n  " + "\n  ".join(reasons))
    source, args, kernel_objs, key, cacheable = _generate(progs, "forward", over_batches=True)
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
    folder = directory or cache_dir()
    return Generated(source, args, kernel_objs, folder / f"pass_{digest}.py", cacheable,
                     tail=tail)


def compile_pass(prog: Program, sources: list[np.ndarray], results: list[np.ndarray],
                 directory: Path | None = None, tail: Program | None = None) -> CompiledPass:
    """:func:`generate_pass` compiled for sources and results like these."""
    return generate_pass(prog, directory, tail).compile((*sources, *results))


def epoch_refusal(prog: Program, mode: str = "train", tail: Program | None = None
                  ) -> list[str]:
    """What keeps ``mode`` (``"train"`` or ``"evaluate"``) of ``prog`` (with ``tail``'s, the
    last shorter batch's, in the same function) from running over batches in one call
    (empty: nothing): its calls (:func:`uncompilable`), an input, target, sample-weight
    buffer or result slot that is not a contiguous place in a memory, or a tail whose slots
    and buffers are not laid out as ``prog``'s."""
    if tail is not None:
        reasons = epoch_refusal(prog, mode) + [f"tail: {r}" for r in epoch_refusal(tail, mode)]
        if _slot_shapes(tail) != _slot_shapes(prog):
            reasons.append("tail: its loss and metric slots or buffers differ from the full "
                           "batches' program's")
        return reasons
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


def generate_epoch(prog: Program, mode: str = "train", directory: Path | None = None,
                   tail: Program | None = None) -> Generated:
    """The module whose function runs ``mode``'s phases of ``prog`` over a range of full
    batches gathered from in-memory arrays (:class:`CompiledEpoch`): one native call for
    the batches of a ``fit`` epoch (``"train"``) or an ``evaluate`` (``"evaluate"``).

    Args:
        prog: The full batches' program.
        mode: ``"train"`` or ``"evaluate"``.
        directory: Where the generated module goes (default :func:`cache_dir`).
        tail: The program of the last, shorter batch (of the same executor and weighting),
            compiled into the same function; ``None``: none.

    Raises:
        StepCompileError: :func:`epoch_refusal` names a reason (for either program).
    """
    if mode not in ("train", "evaluate"):
        raise ValueError(f"an epoch runs mode 'train' or 'evaluate', not {mode!r}")
    progs = [prog] if tail is None else [prog, tail]
    reasons = epoch_refusal(prog, mode, tail)
    if reasons:
        raise StepCompileError(f"this {mode} step cannot be compiled into one native call per "
                               "epoch:\n  " + "\n  ".join(reasons))
    source, args, kernel_objs, key, cacheable = _generate(progs, mode, over_epoch=True)
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
    folder = directory or cache_dir()
    return Generated(source, args, kernel_objs, folder / f"epoch_{digest}.py", cacheable,
                     epoch=True, tail=tail)


def _slot_shapes(prog: Program) -> list[Any]:
    """What an epoch's results are shaped by: the loss slots' and metric slots' layout."""
    places = prog.places
    return [len(places.get("loss_slots", [])),
            [(tuple(s.shape), np.dtype(s.dtype).str) for _, _, s, _ in
             places.get("metric_slots", [])],
            [len(places.get(w, [])) for w in ("inputs", "targets", "weights")]]


def compile_epoch(prog: Program, mode: str, sources: list[np.ndarray],
                  results: list[np.ndarray], directory: Path | None = None,
                  tail: Program | None = None) -> CompiledEpoch:
    """:func:`generate_epoch` compiled for sources (the order last) and results like these."""
    return generate_epoch(prog, mode, directory, tail).compile((*sources, *results))
