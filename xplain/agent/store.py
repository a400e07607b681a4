"""Conversation state per chat session, in SQLite (the file the REST layer keeps its jobs in, when it passes it)."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path

from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_session_id(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise ValueError(f"session id {session_id!r} must be 1-64 letters, digits, '-' or '_'")
    return session_id


def sqlite_path(database_url: str) -> Path:
    """The file of a `sqlite:///path` URL (the form of the `database_url` setting)."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or database_url == prefix:
        raise ValueError(f"conversations are kept in SQLite; expected a 'sqlite:///path' URL, got {database_url!r}")
    return Path(database_url[len(prefix) :])


class ConversationStore:
    """Appends each turn's messages to a session and reads them back in order; safe across threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(str(path), check_same_thread=False)
        with self._lock, self._connection:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS chat_messages ("
                " session_id TEXT NOT NULL, position INTEGER NOT NULL, message TEXT NOT NULL, created REAL NOT NULL,"
                " PRIMARY KEY (session_id, position))"
            )

    def load(self, session_id: str) -> list[BaseMessage]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT message FROM chat_messages WHERE session_id = ? ORDER BY position",
                (check_session_id(session_id),),
            ).fetchall()
        return messages_from_dict([json.loads(row[0]) for row in rows])

    def append(self, session_id: str, messages: list[BaseMessage]) -> None:
        """Add messages after the session's last one, all or none."""
        check_session_id(session_id)
        encoded = [json.dumps(m, ensure_ascii=False) for m in messages_to_dict(messages)]
        with self._lock, self._connection:
            (last,) = self._connection.execute(
                "SELECT COALESCE(MAX(position), -1) FROM chat_messages WHERE session_id = ?", (session_id,)
            ).fetchone()
            now = time.time()
            self._connection.executemany(
                "INSERT INTO chat_messages (session_id, position, message, created) VALUES (?, ?, ?, ?)",
                [(session_id, last + 1 + i, text, now) for i, text in enumerate(encoded)],
            )

    def sessions(self) -> list[str]:
        with self._lock:
            rows = self._connection.execute("SELECT DISTINCT session_id FROM chat_messages ORDER BY session_id")
            return [row[0] for row in rows.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._connection.close()
