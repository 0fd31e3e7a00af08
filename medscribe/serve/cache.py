"""Exact-match response cache: the same request to the same weights gets the stored answer (greedy only).

    cache = ResponseCache(max_entries=1024)
    key = cache.key(body, fingerprint)        # body: the request JSON; fingerprint: model/adapter/index digest
    cache.get(key) / cache.put(key, answer)

The key is the sha256 of the canonical JSON of the whole request (minus `stream`/`stream_options`, which only
change how the same answer is delivered) plus the served model's fingerprint (model files, adapter content,
prompt settings, and for medscribe-rag the index), so a retrained adapter or a rebuilt index never serves a
stale answer. Only temperature 0 is cached: a sampled answer is not meant to repeat. LRU, in memory.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

DELIVERY_ONLY = ("stream", "stream_options")


class ResponseCache:
    def __init__(self, max_entries: int = 1024):
        self.max_entries = max_entries
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(body: dict[str, Any], fingerprint: str) -> str:
        request = {k: v for k, v in body.items() if k not in DELIVERY_ONLY}
        text = json.dumps({"request": request, "fingerprint": fingerprint}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, answer: dict[str, Any]) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._items[key] = answer
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
