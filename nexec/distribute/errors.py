"""The error a distributed step raises when one of its workers fails."""
from __future__ import annotations

from nexec.errors import NexecError

__all__ = ["WorkerError"]


class WorkerError(NexecError, RuntimeError):
    """A Ray worker died (or raised) during a step; the message names its rank, actor id,
    node and process. The driver's model keeps the weights of the last completed step.

    Attributes:
        rank: The worker's rank (its shard of each global batch).
        actor_id: Ray's id of the worker's actor.
        node_id: Ray's id of the node it ran on.
    """

    def __init__(self, message: str, rank: int, actor_id: str, node_id: str) -> None:
        super().__init__(message)
        self.rank = rank
        self.actor_id = actor_id
        self.node_id = node_id
