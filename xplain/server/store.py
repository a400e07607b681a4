"""Durable state of the service: registered models, jobs and their rows (SQLite by default; any SQLAlchemy URL).

Each finished chunk of rows is committed in one transaction as it finishes, so a killed server loses only rows
that were still running, and those run again when it restarts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from xplain.batch.runner import RowOutcome

metadata = sa.MetaData()

models_table = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(120), primary_key=True),  # the registry's key: owner/name
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(120)),  # None for methods that need no model (iprompt, classifiers)
    sa.Column("owner", sa.String(64), nullable=False, server_default=""),  # the API key that made it ("": none)
    sa.Column("method", sa.String(50), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("error", sa.Text),
)

rows_table = sa.Table(
    "job_rows",
    metadata,
    sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("row_index", sa.Integer, primary_key=True),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending | done | failed
    sa.Column("result", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("finished_at", sa.Float),
    sa.Index("job_rows_status", "job_id", "status"),
)

ACTIVE = ("queued", "running")


class Store:
    """Blocking SQLAlchemy work behind async methods (run in a thread), so the event loop never waits on disk."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self._add_owner_column()

    def _add_owner_column(self) -> None:
        """A database made before jobs had owners: its jobs become the operator's (owner "")."""
        if "owner" not in {c["name"] for c in sa.inspect(self.engine).get_columns("jobs")}:
            with self.engine.begin() as db:
                db.execute(sa.text("ALTER TABLE jobs ADD COLUMN owner VARCHAR(64) NOT NULL DEFAULT ''"))

    async def _run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    def close(self) -> None:
        self.engine.dispose()

    # -- models -----------------------------------------------------------------------------------------------

    async def save_model(self, name: str, spec: dict[str, Any]) -> None:
        def work() -> None:
            with self.engine.begin() as db:
                db.execute(sa.delete(models_table).where(models_table.c.name == name))
                db.execute(sa.insert(models_table).values(name=name, spec=spec, created_at=time.time()))

        await self._run(work)

    async def model_specs(self) -> dict[str, dict[str, Any]]:
        def work() -> dict[str, dict[str, Any]]:
            with self.engine.connect() as db:
                return {r.name: r.spec for r in db.execute(sa.select(models_table).order_by(models_table.c.name))}

        return await self._run(work)

    async def delete_model(self, name: str) -> None:
        def work() -> None:
            with self.engine.begin() as db:
                db.execute(sa.delete(models_table).where(models_table.c.name == name))

        await self._run(work)

    # -- jobs -------------------------------------------------------------------------------------------------

    async def create_job(
        self, model: str | None, method: str, options: dict[str, Any], rows: list[Any], owner: str = ""
    ) -> str:
        job_id = uuid.uuid4().hex

        def work() -> None:
            with self.engine.begin() as db:
                db.execute(
                    sa.insert(jobs_table).values(
                        id=job_id, model=model, owner=owner, method=method, options=options, status="queued",
                        total=len(rows), created_at=time.time(),
                    )
                )  # fmt: skip
                db.execute(
                    sa.insert(rows_table),
                    [{"job_id": job_id, "row_index": i, "input": row, "status": "pending"} for i, row in enumerate(rows)],
                )

        await self._run(work)
        return job_id

    async def job(self, job_id: str) -> dict[str, Any] | None:
        def work() -> dict[str, Any] | None:
            with self.engine.connect() as db:
                row = db.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
                if row is None:
                    return None
                counts = dict(
                    db.execute(
                        sa.select(rows_table.c.status, sa.func.count())
                        .where(rows_table.c.job_id == job_id)
                        .group_by(rows_table.c.status)
                    ).all()
                )
                return dict(row) | {"done": counts.get("done", 0), "failed": counts.get("failed", 0)}

        return await self._run(work)

    async def jobs(self, limit: int = 100, owner: str | None = None) -> list[dict[str, Any]]:
        """The newest jobs: `owner`'s, or everyone's when `owner` is None."""

        def work() -> list[dict[str, Any]]:
            with self.engine.connect() as db:
                query = sa.select(jobs_table).order_by(jobs_table.c.created_at.desc()).limit(limit)
                if owner is not None:
                    query = query.where(jobs_table.c.owner == owner)
                return [dict(r) for r in db.execute(query).mappings()]

        return await self._run(work)

    async def active_job_ids(self) -> list[str]:
        def work() -> list[str]:
            with self.engine.connect() as db:
                query = sa.select(jobs_table.c.id).where(jobs_table.c.status.in_(ACTIVE)).order_by(jobs_table.c.created_at)
                return list(db.execute(query).scalars())

        return await self._run(work)

    async def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        finished = None if status in ACTIVE else time.time()

        def work() -> None:
            with self.engine.begin() as db:
                db.execute(
                    sa.update(jobs_table)
                    .where(jobs_table.c.id == job_id)
                    .values(status=status, error=error, finished_at=finished)
                )

        await self._run(work)

    async def unfinished_rows(self, job_id: str) -> list[tuple[int, Any]]:
        """Rows to run: pending ones, and failed ones (a resume retries them)."""

        def work() -> list[tuple[int, Any]]:
            with self.engine.begin() as db:
                db.execute(
                    sa.update(rows_table)
                    .where(rows_table.c.job_id == job_id, rows_table.c.status == "failed")
                    .values(status="pending", error=None, finished_at=None)
                )
                query = (
                    sa.select(rows_table.c.row_index, rows_table.c.input)
                    .where(rows_table.c.job_id == job_id, rows_table.c.status == "pending")
                    .order_by(rows_table.c.row_index)
                )
                return [(r.row_index, r.input) for r in db.execute(query)]

        return await self._run(work)

    async def record_rows(self, job_id: str, outcomes: list[RowOutcome]) -> None:
        """One transaction per chunk: the rows are finished once this returns, and never before."""
        now = time.time()

        def work() -> None:
            with self.engine.begin() as db:
                for outcome in outcomes:
                    db.execute(
                        sa.update(rows_table)
                        .where(rows_table.c.job_id == job_id, rows_table.c.row_index == outcome.index)
                        .values(
                            status="done" if outcome.ok else "failed",
                            result=outcome.result,
                            error=outcome.error,
                            finished_at=now,
                        )
                    )

        await self._run(work)

    async def failure_reasons(self, job_id: str) -> list[str]:
        """The error of each failed row of a job."""

        def work() -> list[str]:
            with self.engine.connect() as db:
                query = sa.select(rows_table.c.error).where(
                    rows_table.c.job_id == job_id, rows_table.c.status == "failed"
                )
                return [error or "" for error in db.execute(query).scalars()]

        return await self._run(work)

    async def results(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        def work() -> list[dict[str, Any]]:
            with self.engine.connect() as db:
                query = (
                    sa.select(rows_table.c.row_index, rows_table.c.status, rows_table.c.result, rows_table.c.error)
                    .where(rows_table.c.job_id == job_id, rows_table.c.status != "pending")
                    .order_by(rows_table.c.row_index)
                    .offset(offset)
                    .limit(limit)
                )
                return [
                    {"index": r.row_index, "ok": r.status == "done", "result": r.result, "error": r.error}
                    for r in db.execute(query)
                ]

        return await self._run(work)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

