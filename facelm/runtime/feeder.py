"""The source feeder of the prediction pipeline (``facelm.runtime.pipeline``): a background thread that walks the
sources and submits reading, detection and stage-1 cropping of each item to the reader pool, so the main thread
finds prepared images waiting and the networks are not starved."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from facelm.sources import SourceItem

__all__ = ["Feeder"]


class Feeder:
    """Submits ``prepare(item)`` for each source item to the reader pool, from a background thread, into a bounded
    queue of futures ended by ``DONE``; an exception raised while walking the sources is kept in ``failure``.
    Setting ``stop`` ends it early."""

    DONE = object()

    def __init__(self, items: Iterable[SourceItem], prepare, pool: ThreadPoolExecutor, lookahead: int):
        self.futures: queue.Queue = queue.Queue(maxsize=lookahead)
        self.stop = threading.Event()
        self.failure: list[BaseException] = []
        self._items, self._prepare, self._pool = items, prepare, pool
        self.thread = threading.Thread(target=self._produce, name="facelm-sources", daemon=True)

    def _put(self, obj) -> bool:
        while not self.stop.is_set():
            try:
                self.futures.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if self.stop.is_set() or not self._put(self._pool.submit(self._prepare, item)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self.failure.append(e)
        finally:
            self._put(self.DONE)
