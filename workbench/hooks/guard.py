"""The one process-wide guard for model access: TransformerLens and nnsight are not thread-safe.

Hooks are global module state (TransformerLens registers them on shared hook points for the length of
a call) and nnsight binds its workers to one thread, so two threads using a model at once silently
mix caches or fail. Every model call from the app goes through this one re-entrant lock:

    with model_lock():
        logits, cache = hooked_model.run_with_cache(tokens)

or decorate a function with ``@guarded``. The hookable wrappers and the intervention functions take
the lock themselves, so a caller holding it (re-entrant) or not is safe either way. Precomputed
caches can be read without it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable)

#: the one lock; re-entrant so guarded functions may call each other
MODEL_LOCK = threading.RLock()


@contextmanager
def model_lock(timeout: float | None = None) -> Iterator[None]:
    """Hold the process-wide model lock for the ``with`` block (``TimeoutError`` after ``timeout`` s).

    >>> with model_lock():
    ...     pass
    """
    if not MODEL_LOCK.acquire(timeout=-1 if timeout is None else timeout):
        raise TimeoutError(f"the model stayed busy for {timeout} s")
    try:
        yield
    finally:
        MODEL_LOCK.release()


def guarded(fn: F) -> F:
    """Decorate ``fn`` so that every call holds the model lock.

    >>> @guarded
    ... def answer():
    ...     return 42
    >>> answer()
    42
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with MODEL_LOCK:
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


__all__ = ["MODEL_LOCK", "model_lock", "guarded"]
