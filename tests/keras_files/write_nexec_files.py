"""Writes nexec's own output for ``make_fixtures.py`` to check with real Keras (not run by CI).

Run with nexec's environment from the repository root:
``python -m tests.keras_files.write_nexec_files``. For every Keras fixture (loaded in nexec)
and for models built in nexec itself, it writes ``fixtures/nexec_written/NAME.keras``
and ``NAME.h5`` (``model.save``), ``NAME.json`` (``model.to_json()``) and ``NAME.inputs.npz``; then
``make_fixtures.py --check-only`` loads them with Keras and records Keras' predictions.
"""
from __future__ import annotations

import os

import numpy as np

from tests.keras_files.models import FIXTURES, HERE, NATIVE, WRITTEN, fixture_inputs, load


def main() -> None:
    os.makedirs(WRITTEN, exist_ok=True)
    models = {name: (load(name, ".keras"), fixture_inputs(name)) for name in FIXTURES}
    for name, build in NATIVE.items():
        model, xs = build()
        models[name] = (model, xs)
    for name, (model, xs) in models.items():
        model.save(os.path.join(WRITTEN, f"{name}.keras"))
        model.save(os.path.join(WRITTEN, f"{name}.h5"))
        with open(os.path.join(WRITTEN, f"{name}.json"), "w") as f:
            f.write(model.to_json(indent=1, sort_keys=True))
        np.savez(os.path.join(WRITTEN, f"{name}.inputs.npz"),
                 **{f"x{j}": x for j, x in enumerate(xs)})
        print("wrote", name, "to", os.path.relpath(WRITTEN, HERE))


if __name__ == "__main__":
    main()
