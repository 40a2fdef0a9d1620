"""The ``nexec`` command line (also ``python -m nexec``).

    nexec demo [--quick] [--out DIR]   the tour: train the seed MLP, a CNN on real digits, ...
    nexec summary FILE                 the summary of a saved model or a JSON config
    nexec plot FILE -o OUT             the graph of a saved model or JSON config as a picture
    nexec plugins [--json]             installed plugins, what they register, any errors
    nexec warmup [--group G] [--dtype D]  compile and cache every built-in kernel ahead of time

Every failure prints one line, ``nexec: error: ...``, and exits with status 1 (2 for a wrong
command line). ``nexec plugins`` also exits 1 when a plugin has an error, so CI can run it as
a check.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any, Sequence

from nexec._version import __version__
from nexec.errors import NexecError
from nexec.plugins.hookspecs import API_VERSION

__all__ = ["main", "plugins_text", "load_any"]


def plugins_text(info: list[dict]) -> str:
    """``nexec.plugins_info()`` as the text ``nexec plugins`` prints."""
    lines = [f"nexec plugin API {API_VERSION}; {len(info)} plugin(s)"]
    for p in info:
        lines.append(f"{p['name']} {p['version'] or '(no version)'}"
                     + ("  [ERROR]" if p["error"] else ""))
        for kind, names in p["provides"].items():
            lines.append(f"  {kind}: {', '.join(names)}")
        if not p["provides"]:
            lines.append("  registers nothing")
        if p["error"]:
            lines.append(f"  error: {p['error']}")
    return "\n".join(lines)


def _plugins(args: argparse.Namespace) -> int:
    from nexec.plugins import plugins_info, reset_registry

    with warnings.catch_warnings():
        # Errors are printed below, once, with the plugin they belong to.
        warnings.simplefilter("ignore")
        reset_registry()
    info = plugins_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(plugins_text(info))
    return 1 if any(p["error"] for p in info) else 0


def load_any(path: str) -> Any:
    """A model from a ``model.save`` file or from JSON (``model.to_json()`` or a config)."""
    from nexec.saving import is_zip_file, layer_class, load_model, model_from_config

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: '{path}'")
    if is_zip_file(path):
        return load_model(path, compile=False)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"'{path}' is neither a saved model (model.save) nor a JSON model "
                         "config (model.to_json())") from None
    if isinstance(data, dict) and "class_name" in data and "config" in data:
        cls, config = layer_class(data["class_name"]), data["config"]
    elif isinstance(data, dict) and "layers" in data:
        cls, config = None, data
    else:
        raise ValueError(f"'{path}' is JSON but not a nexec model config (no 'class_name' and "
                         "'config', nor 'layers')")
    try:
        return model_from_config(config, cls)
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"'{path}' is a malformed model config ({type(e).__name__}: {e})") \
            from None


def _demo(args: argparse.Namespace) -> int:
    from nexec.demo import run_demo

    run_demo(quick=args.quick, out_dir=args.out)
    return 0


def _summary(args: argparse.Namespace) -> int:
    load_any(args.file).summary()
    return 0


def _plot(args: argparse.Namespace) -> int:
    from nexec.plot import plot_model

    plot_model(load_any(args.file), args.output, show_shapes=not args.no_shapes,
               show_layer_activations=not args.no_shapes, rankdir=args.rankdir,
               expand_nested=args.expand_nested)
    print(f"wrote {args.output}")
    return 0


def _warmup(args: argparse.Namespace) -> int:
    from nexec.precompile import warmup

    warmup(args.group or None, args.dtype or ("float32",), verbose=0 if args.quiet else 1)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexec", description="nexec: the Keras functional API on a static graph executor.")
    parser.add_argument("--version", action="version", version=f"nexec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    p = sub.add_parser("demo", help="train the seed MLP and a CNN on real digits; draw them",
                       description="The tour: the seed MLP (Sequential and functional), an "
                       "Inception + residual CNN trained on the UCI digits that ship with "
                       "nexec, a two-input / two-output model, and pictures of the CNN.")
    p.add_argument("--quick", action="store_true", help="seconds, not a minute (fewer epochs)")
    p.add_argument("--out", default="nexec-demo", metavar="DIR",
                   help="folder for the pictures (default: ./nexec-demo)")
    p.set_defaults(run=_demo)
    p = sub.add_parser("summary", help="print the summary of a saved model or JSON config",
                       description="Print model.summary() of FILE: a file written by "
                       "model.save(), or JSON from model.to_json().")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(run=_summary)
    p = sub.add_parser("plot", help="draw the graph of a saved model or JSON config",
                       description="Draw the graph of FILE (a model.save() file or "
                       "model.to_json() JSON) into OUT: .dot needs nothing; .png, .svg, "
                       ".pdf need Graphviz (pip install graphviz; apt-get install graphviz).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the picture: .dot, .png, .svg, .pdf or .jpg")
    p.add_argument("--no-shapes", action="store_true",
                   help="boxes with names only, no shapes and activations")
    p.add_argument("--rankdir", default="TB", choices=["TB", "LR"],
                   help="top to bottom (default) or left to right")
    p.add_argument("--expand-nested", action="store_true",
                   help="draw the layers of nested models")
    p.set_defaults(run=_plot)
    p = sub.add_parser("plugins", help="list installed plugins, what they register, errors",
                       description="List every installed plugin, what it registers, and any "
                       "error; exits 1 when a plugin has an error.")
    p.add_argument("--json", action="store_true", help="print nexec.plugins_info() as JSON")
    p.set_defaults(run=_plugins)
    from nexec.precompile import GROUPS

    p = sub.add_parser("warmup", help="compile and cache every built-in kernel ahead of time",
                       description="Compile the kernels of every built-in layer, loss, "
                       "optimizer and metric into Numba's cache (NUMBA_CACHE_DIR, else "
                       "__pycache__ beside nexec's kernels), so the first fit of a later "
                       "process only loads them. Run it after install, e.g. in a Docker "
                       "build step, as the user that will run the models.")
    p.add_argument("--group", action="append", choices=list(GROUPS), metavar="G",
                   help=f"only this group (repeatable): {', '.join(GROUPS)}")
    p.add_argument("--dtype", action="append", choices=["float32", "float64"], metavar="D",
                   help="float32 (default) and/or float64 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(run=_warmup)
    return parser


def _reader_went_away() -> int:
    """``nexec ... | head`` closed the pipe: quiet, as CPython's docs recommend (the rest of
    the output goes to devnull so the flush at exit cannot raise again)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nexec`` script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        status = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return status
    except BrokenPipeError:
        return _reader_went_away()
    except (NexecError, OSError, ValueError, ImportError) as e:
        # Errors nexec raises on purpose carry a full sentence; a traceback adds nothing.
        print(f"nexec: error: {str(e).rstrip('.')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nexec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
