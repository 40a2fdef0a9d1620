"""Embedding: token ids in, one learned vector per id out (Keras 3 layout)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nexec.checks import positive_int
from nexec.graph import SymbolicTensor
from nexec.layers.base import Layer, ParamSpec, Shape
from nexec.plugins import registry

__all__ = ["Embedding"]

#: Keras' name of the default initialiser and the registered one it means (U(-0.05, 0.05)).
_ALIASES = {"uniform": "random_uniform", "normal": "random_normal"}


def _registered(name: str) -> str:
    """The registered initialiser a Keras name means (``"uniform"``: ``random_uniform``)."""
    return name if name in registry().initializers else _ALIASES.get(name, name)


class Embedding(Layer):
    """Turns integer ids into dense vectors: ``out[..., :] = embeddings[ids[...]]``.

    The ids may be an integer input (``Input(shape=(T,), dtype="int32")``) or whole numbers
    in a float input (as Keras, which casts them); ids outside ``[0, input_dim)`` are an
    error (checked in the data before ``fit``/``predict`` runs, and by the CPU kernel before
    it writes anything). The output's dtype is the layer's ``dtype`` (float32 unless given),
    which becomes the model's when every input is integer.

    Args:
        input_dim: Size of the vocabulary: the largest id plus one.
        output_dim: Length of each vector.
        embeddings_initializer: Initialiser of the ``(input_dim, output_dim)`` weights; Keras'
            ``"uniform"`` (default) is U(-0.05, 0.05).
        mask_zero: Whether id 0 is padding: the output then carries a mask (Keras'
            ``compute_mask``) that masking layers read, and any other layer refuses.
        input_length: Keras 2's fixed sequence length, deprecated in Keras 3; here it gives
            the first layer of a ``Sequential`` its input shape ``(input_length,)``.
        weights: Initial weights, ``[embeddings]`` (or the array itself), set when built.
        embeddings_regularizer, activity_regularizer, embeddings_constraint, lora_rank:
            Keras arguments nexec does not support; only ``None`` is accepted.

    Example:
        >>> from nexec import Input, layers
        >>> layers.Embedding(1000, 8)(Input(shape=(12,), dtype="int32")).shape
        (None, 12, 8)
    """

    accepts_ids = True

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: str | Callable = "uniform",
                 embeddings_regularizer: Any = None, embeddings_constraint: Any = None,
                 mask_zero: bool = False, weights: Any = None, lora_rank: Any = None,
                 input_length: int | None = None, activity_regularizer: Any = None,
                 **kwargs: Any) -> None:
        if input_length is not None and "input_shape" not in kwargs and \
                "batch_input_shape" not in kwargs:
            kwargs["input_shape"] = (positive_int(input_length, "input_length", "Embedding"),)
        super().__init__(**kwargs)
        where = f"Embedding '{self.name}'"
        self.input_dim = positive_int(input_dim, "input_dim", where)
        self.output_dim = positive_int(output_dim, "output_dim", where)
        for arg, value in (("embeddings_regularizer", embeddings_regularizer),
                           ("embeddings_constraint", embeddings_constraint),
                           ("activity_regularizer", activity_regularizer),
                           ("lora_rank", lora_rank)):
            if value is not None:
                raise ValueError(f"{where}: {arg}={value!r} is not supported by nexec; only "
                                 f"{arg}=None is accepted.")
        if isinstance(embeddings_initializer, str):
            try:
                registry().initializer(_registered(embeddings_initializer))
            except ValueError as e:
                raise ValueError(f"{where}: embeddings_initializer: {e}") from None
        elif not callable(embeddings_initializer):
            raise ValueError(f"{where}: embeddings_initializer must be an initialiser name or a "
                             f"callable (shape, dtype, rng), got {embeddings_initializer!r}.")
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ValueError(f"{where}: mask_zero must be True or False, got {mask_zero!r}.")
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = bool(mask_zero)
        self.input_length = None if input_length is None else int(input_length)
        self._initial_weights = None if weights is None else \
            (list(weights) if isinstance(weights, (list, tuple)) else [weights])

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        return (*shape, self.output_dim)

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        init = self.embeddings_initializer
        if isinstance(init, str):
            init = _registered(init)
        return [ParamSpec("embeddings", (self.input_dim, self.output_dim), init)]

    def build(self, input_shapes: list[Shape], dtype: str = "float32") -> None:
        super().build(input_shapes, dtype)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_mask(self, inputs: Any, previous_mask: Any) -> SymbolicTensor | None:
        """With ``mask_zero``, the ids themselves: Keras' mask ``ids != 0``."""
        return inputs if self.mask_zero else None

    def get_config(self) -> dict[str, Any]:
        cfg = {**super().get_config(), "input_dim": self.input_dim,
               "output_dim": self.output_dim,
               "embeddings_initializer": self.embeddings_initializer,
               "mask_zero": self.mask_zero}
        if self.input_length is not None:
            cfg["input_length"] = self.input_length
        return cfg
