"""A small bounded cache: the client's prepared requests and parsed URLs."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["Recent"]


class Recent(dict[K, V]):
    """A dict of at most ``size`` entries; the one used least recently goes first.

    Only the working set of a busy client stays: a status read polled again and again
    is found, while a flow that waits for hours on a webhook holds nothing here (each
    entry costs about a kilobyte; 100,000 waiting flows would otherwise keep one each up
    to the cap).
    """

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def recent(self, key: K) -> V | None:
        """The entry for ``key`` (now the most recently used), or None."""
        value = self.pop(key, None)
        if value is not None:
            self[key] = value
        return value

    def keep(self, key: K, value: V) -> V:
        """Store ``value`` for ``key``, dropping the least recently used if full."""
        if key not in self and len(self) >= self.size:
            del self[next(iter(self))]
        self[key] = value
        return value
