"""Step numbering of one executor step: the one place the ``2n - i`` rule is written.

Forward ops run at steps ``0..n-1``. In training the loss step is ``n``, the backward of op
``i`` runs at ``2n - i`` (backward visits the ops in reverse, so the last op's backward comes
right after the loss), and the optimizer update is ``2n + 1``. Lifetimes are ranges of these
numbers, so every stage that decides one must count the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepNumbering"]


@dataclass(frozen=True)
class StepNumbering:
    """The steps of ``n`` forward ops, with or without training.

    Args:
        n: Number of forward ops.
        training: Whether a loss, backward and update steps follow the forward steps.
    """

    n: int
    training: bool

    def forward(self, op_index: int) -> int:
        return op_index

    def backward(self, op_index: int) -> int:
        return 2 * self.n - op_index

    @property
    def loss(self) -> int:
        return self.n

    @property
    def update(self) -> int:
        return 2 * self.n + 1

    @property
    def count(self) -> int:
        """How many steps there are (the update step is the last in training)."""
        return self.update + 1 if self.training else self.n
