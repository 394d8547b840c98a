"""The app's result caches: small thread-safe LRUs whose misses are computed one at a time under the model lock.

Every cache made here is registered, so ``clear_all`` (tests; ``app.state.clear_caches``) forgets every result.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from workbench.hooks.guard import MODEL_LOCK

_ALL: list["LRU"] = []


class LRU:
    """A small thread-safe LRU cache whose misses are computed one at a time under the model lock.

    size: the most entries kept; budget: the most bytes kept (entries weighed by ``nbytes``), so a
    cache of big arrays holds many small problems' results and few large ones'. Concurrent requests
    for one key compute it once: the second waits for the model lock, then finds the result.
    """

    def __init__(self, size: int, budget: int | None = None) -> None:
        self.size, self.budget = size, budget
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes: dict[Hashable, int] = {}
        self._lock = threading.Lock()
        _ALL.append(self)

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        hit = self.get(key)
        if hit is not None:
            return hit
        with MODEL_LOCK:  # one computation at a time; a second session asking for the same key waits, then hits
            hit = self.get(key)
            if hit is not None:
                return hit
            value = compute()
        with self._lock:
            self._data[key] = value
            self._bytes[key] = nbytes(value) if self.budget is not None else 0
            while len(self._data) > 1 and (len(self._data) > self.size or
                                           (self.budget is not None and sum(self._bytes.values()) > self.budget)):
                old, _ = self._data.popitem(last=False)
                self._bytes.pop(old, None)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes.clear()


def nbytes(value: Any) -> int:
    """The bytes of the arrays in ``value`` (an array, or a tuple or list of them)."""
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    return int(getattr(value, "nbytes", 0))




def clear_all() -> None:
    """Forget every cached result of every ``LRU``."""
    for cache in _ALL:
        cache.clear()


__all__ = ["LRU", "nbytes", "clear_all"]
