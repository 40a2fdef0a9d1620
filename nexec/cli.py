"""The ``nexec`` command line.

``nexec plugins`` lists every installed plugin (nexec's built-ins first): its version, what it
registers, and any error (failed import, wrong API version, a name already taken). It exits
with status 1 when a plugin has an error, so CI can run it as a check.

Example:
    $ nexec plugins
    nexec.builtin 0.1.0
      layers: InputLayer, Dense, Conv2D, Concatenate, Add, Activation, Flatten
      ...
    nexec-pooling:pooling 0.1.0
      layers: MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D
      kernels: MaxPooling2D/cpu, AveragePooling2D/cpu, GlobalAveragePooling2D/cpu
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Sequence

__all__ = ["main", "plugins_text"]


def plugins_text(info: list[dict]) -> str:
    """``nexec.plugins_info()`` as the text ``nexec plugins`` prints."""
    from nexec.plugin import API_VERSION

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nexec`` script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="nexec", description="nexec command line tools.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    p = sub.add_parser("plugins", help="list installed plugins, what they register, errors")
    p.add_argument("--json", action="store_true", help="print nexec.plugins_info() as JSON")
    p.set_defaults(run=_plugins)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
