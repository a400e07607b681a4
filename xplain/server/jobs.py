"""Batch jobs: each runs as an asyncio task over its unfinished rows; progress is counted from the store.

Restarting the server resumes every job that was queued or running; rows already stored are never run again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from xplain.batch.runner import Progress, RowOutcome, describe_error, is_bad_input, run_rows
from xplain.methods.catalog import get_method
from xplain.errors import NotFound
from xplain.llm import LLM
from xplain.server.guards import OPERATOR, Principal
from xplain.server.registry import ModelRegistry
from xplain.server.store import Store
from xplain.service import method_context
from xplain.settings import Settings

log = logging.getLogger("xplain.jobs")


class JobNotFound(NotFound):
    pass


class JobSink:
    """Finished rows of one job go to the store, one transaction per chunk."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store = store
        self.job_id = job_id

    async def record(self, outcomes: list[RowOutcome]) -> None:
        await self.store.record_rows(self.job_id, outcomes)


class JobManager:
    def __init__(self, store: Store, registry: ModelRegistry, llm: LLM, settings: Settings) -> None:
        self.store = store
        self.registry = registry
        self.llm = llm
        self.settings = settings
        self.tasks: dict[str, asyncio.Task] = {}
        self.progress: dict[str, Progress] = {}

    async def submit(self, model: str | None, method: str, options: dict, rows: list, owner: str = "") -> str:
        job_id = await self.store.create_job(model, method, options, rows, owner)
        await self.start(job_id)
        return job_id

    async def start(self, job_id: str) -> None:
        if job_id in self.tasks and not self.tasks[job_id].done():
            return
        self.tasks[job_id] = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")

    async def resume_all(self) -> list[str]:
        ids = await self.store.active_job_ids()
        for job_id in ids:
            await self.start(job_id)
        return ids

    async def cancel(self, job_id: str) -> None:
        task = self.tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.store.set_status(job_id, "cancelled")

    async def shutdown(self) -> None:
        """Stop running tasks without marking jobs: they stay 'running' in the store and resume on next start."""
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def snapshot(self, job_id: str, principal: Principal = OPERATOR) -> tuple[dict, Progress]:
        """The job and its progress, if `principal` may see it; another key's job is as missing as one never made."""
        job = await self.store.job(job_id)
        if job is None or not principal.sees(job["owner"]):
            raise JobNotFound(f"no job {job_id!r}")
        live = self.progress.get(job_id)
        progress = Progress(
            total=job["total"],
            done=job["done"],
            failed=job["failed"],
            started_at=live.started_at if live else job["created_at"],
            run_done=live.run_done if live else 0,
            stage=live.stage if live else None,
            stage_fraction=live.stage_fraction if live else None,
            ended_at=live.ended_at if live else None,
        )
        return job, progress

    async def _run(self, job_id: str) -> None:
        job = await self.store.job(job_id)
        if job is None:
            return
        try:
            method = get_method(job["method"])
            options = method.parse_options(job["options"])
            opened = self.registry.opened(job["model"]) if job["model"] and method.needs_model else None
            context = method_context(method, opened, llm=self.llm, settings=self.settings, owner=job["owner"])
        except (LookupError, ValueError) as error:
            await self.store.set_status(job_id, "failed", describe_error(error))
            return
        rows = await self.store.unfinished_rows(job_id)
        await self.store.set_status(job_id, "running")
        progress = Progress(total=job["total"], done=job["done"], failed=0, started_at=time.time())
        self.progress[job_id] = progress
        context.progress = progress.at_stage

        try:
            await run_rows(
                method,
                context,
                rows,
                options,
                sink=JobSink(self.store, job_id),
                concurrency=self.settings.job_concurrency,  # unset: sized to the method and the LLM backend
                chunk_size=self.settings.job_chunk_size,
                on_chunk=progress.add,
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug in a method must not leave the job 'running' forever
            log.exception("job %s crashed", job_id)
            await self.store.set_status(job_id, "failed", describe_error(error))
            return
        finally:
            progress.ended_at = time.time()
        await self.store.set_status(job_id, *await self._verdict(job_id))

    async def _verdict(self, job_id: str) -> tuple[str, str | None]:
        """(status, note) of a job whose rows all ran: rows that failed on their own input fail alone (the job is
        completed, resuming would fail them again); other failures (a backend down) make it failed and resumable."""
        reasons = await self.store.failure_reasons(job_id)
        retryable = [reason for reason in reasons if not is_bad_input(reason)]
        if retryable:
            example = retryable[0][:200]
            return "failed", f"{len(retryable)} row(s) failed (e.g. {example}); POST /jobs/{job_id}/resume retries them"
        if reasons:
            return "completed", f"{len(reasons)} row(s) failed on their input; each row's error says why"
        return "completed", None
