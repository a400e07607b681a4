"""Response cache for deterministic LLM work: temperature-0 completions and log-likelihood scores.

Memory first, then an optional SQLite file, so a rerun of the same explanation costs no LLM calls.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class ResponseCache:
    """A string -> JSON-text map: a dict in memory, mirrored to SQLite when `path` is given."""

    def __init__(self, path: Path | None = None) -> None:
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._memory.get(key)
            if value is None and self._db is not None:
                row = self._db.execute("SELECT value FROM llm_cache WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    value = self._memory[key] = row[0]
            return value

    def put_many(self, items: dict[str, str]) -> None:
        if not items:
            return
        with self._lock:
            self._memory.update(items)
            if self._db is not None:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO llm_cache (key, value) VALUES (?, ?)", list(items.items()))
                self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            if self._db is not None:
                return self._db.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0]
            return len(self._memory)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
