"""Compile settings as Keras files record them: Keras 3's ``compile_config`` and Keras 2's
``training_config``, read into ``model.compile`` arguments and written from nexec's.

Only what nexec supports is restored; anything else (an optimizer or loss nexec lacks, an
option it refuses) leaves the model uncompiled with a warning saying why, since the weights
and predictions are still right and ``compile`` can be called again by hand.
"""
from __future__ import annotations

import warnings
from typing import Any

from nexec.plugins import registry

__all__ = ["compile_from_keras", "keras_compile_config"]


def _optimizer(entry: Any) -> Any:
    if isinstance(entry, str):
        return entry
    class_name = entry.get("class_name")
    cls: Any = next((c for c in registry().optimizers.values() if c.__name__ == class_name),
                    None)
    if cls is None:
        raise ValueError(f"optimizer {class_name!r} is not available in nexec")
    return cls.from_config(dict(entry.get("config") or {}))


def _plain(value: Any) -> Any:
    """Keras' serialised losses/metrics as nexec's compile takes them."""
    if isinstance(value, dict) and "class_name" in value:
        return {"class_name": value["class_name"], "config": value.get("config") or {}}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def compile_from_keras(model: Any, config: dict[str, Any] | None, path: str) -> bool:
    """Compiles ``model`` as a Keras file's compile settings say; True when it did.

    Args:
        model: The rebuilt nexec model.
        config: Keras 3's ``compile_config`` or Keras 2's ``training_config`` (None or
            empty: the file was saved uncompiled).
        path: The file, for the warning.
    """
    if not config:
        return False
    try:
        if config.get("weighted_metrics"):
            raise ValueError("weighted_metrics are not supported by nexec")
        opt_entry = config.get("optimizer", config.get("optimizer_config"))
        if opt_entry is None:
            return False
        # steps_per_execution is how often batch callbacks run: kept. jit_compile is the
        # saving backend's XLA choice (Keras records "auto" resolved, usually True): not
        # taken as nexec's jit_step, which stays its default.
        model.compile(optimizer=_optimizer(opt_entry), loss=_plain(config.get("loss")),
                      metrics=_plain(config.get("metrics")),
                      loss_weights=config.get("loss_weights"),
                      steps_per_execution=config.get("steps_per_execution") or 1)
        return True
    except Exception as e:  # noqa: BLE001 - an unsupported setting: keep the weights
        warnings.warn(f"'{path}': the model's compile settings could not be restored in "
                      f"nexec ({type(e).__name__}: {e}); it is loaded uncompiled. Call "
                      "model.compile(...) before training.", stacklevel=3)
        return False


def keras_compile_config(trainer: Any) -> dict[str, Any]:
    """Keras 3's ``compile_config`` of a compiled nexec model's trainer."""
    opt = trainer.optimizer
    config = trainer.config
    losses = [_keras_object(loss, "keras.losses") for loss in config["loss"]]
    metrics = config["metrics"]
    single = len(losses) == 1
    return {"optimizer": {"module": "keras.optimizers", "class_name": type(opt).__name__,
                          "config": opt.get_config(), "registered_name": None},
            "loss": losses[0] if single else losses,
            "loss_weights": None if all(w == 1.0 for w in config["loss_weights"])
            else config["loss_weights"],
            "metrics": (metrics[0] or None) if single else metrics,
            "weighted_metrics": None, "run_eagerly": False,
            "steps_per_execution": trainer.steps_per_execution,
            "jit_compile": trainer.train_executor.jit_step is True}


def _keras_object(value: Any, module: str) -> Any:
    if isinstance(value, dict) and "class_name" in value:
        return {"module": module, "class_name": value["class_name"],
                "config": value.get("config") or {}, "registered_name": None}
    return value
