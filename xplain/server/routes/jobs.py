"""Batch jobs: submit, watch (status or server-sent events), page through and download results, cancel, resume."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from xplain.batch.runner import RowOutcome
from xplain.methods.catalog import get_method, units_for
from xplain.batch.sources import read_rows, resolve_data_file
from xplain.server.deps import Principal, Service, principal, service
from xplain.server.registry import split_key
from xplain.server.schemas import JobInfo, JobRequest, ResultsPage

router = APIRouter(prefix="/jobs", tags=["jobs"])

TERMINAL = {"completed", "failed", "cancelled"}
EXPORT_PAGE = 1000
#: Bound of `offset` (a job holds far fewer rows; the database's integers end not far above).
MAX_OFFSET = 2**31 - 1


Who = Depends(principal)


async def _info(job_id: str, svc: Service, who: Principal) -> JobInfo:
    """The job, if `who` may see it (its own, or any for an admin key); 404 otherwise, as if it did not exist."""
    job, progress = await svc.jobs.snapshot(job_id, who)
    return JobInfo(
        id=job["id"],
        model=split_key(job["model"])[1] if job["model"] else None,
        method=job["method"],
        options=job["options"],
        status=job["status"],
        error=job["error"],
        progress=progress,
        created_at=job["created_at"],
        finished_at=job["finished_at"],
    )


@router.post("", response_model=JobInfo, status_code=202)
async def submit_job(body: JobRequest, svc: Service = Depends(service), who: Principal = Who) -> JobInfo:
    """Validate everything before storing anything: a refused job leaves no trace. The job belongs to the API key
    that submits it."""
    method = get_method(body.method)
    svc.context(method, body.model, who.owner)
    options = method.parse_options(body.options)
    if body.file is not None:
        path = resolve_data_file(body.file, svc.settings.data_dir)
        rows = await asyncio.to_thread(read_rows, path, column=body.column)
    else:
        rows = body.rows or []
    if len(rows) > svc.settings.max_batch_rows:
        raise ValueError(f"{len(rows)} rows; a job holds at most {svc.settings.max_batch_rows} (XPLAIN_MAX_BATCH_ROWS)")
    if not rows and not (method.unit == "set" and not method.min_inputs):  # a method of the whole data takes none
        raise ValueError("the data file has no rows")
    rows = units_for(method, rows)
    model = svc.registry.key_for(body.model, who.owner) if body.model is not None else None
    job_id = await svc.jobs.submit(model, body.method, options.model_dump(mode="json"), rows, who.owner)
    return await _info(job_id, svc, who)


@router.get("", response_model=list[JobInfo])
async def list_jobs(
    svc: Service = Depends(service), who: Principal = Who, limit: int = Query(50, ge=1, le=500)
) -> list[JobInfo]:
    """This key's newest jobs (every key's, for an admin key)."""
    jobs = await svc.store.jobs(limit, owner=None if who.admin else who.owner)
    return [await _info(job["id"], svc, who) for job in jobs]


@router.get("/{job_id}", response_model=JobInfo)
async def job_status(job_id: str, svc: Service = Depends(service), who: Principal = Who) -> JobInfo:
    return await _info(job_id, svc, who)


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(
    job_id: str,
    request: Request,
    svc: Service = Depends(service),
    who: Principal = Who,
    interval: float = Query(0.5, ge=0.05, le=10),
) -> StreamingResponse:
    """Progress as server-sent events (`event: progress`), ending with `event: end` when the job stops; the stream
    also ends when the server starts to shut down, so that it never holds the shutdown up."""
    await _info(job_id, svc, who)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        while True:
            info = await _info(job_id, svc, who)
            kind = "end" if info.status in TERMINAL else "progress"
            yield f"event: {kind}\ndata: {info.model_dump_json()}\n\n"
            if kind == "end" or await request.is_disconnected() or getattr(request.app.state, "draining", False):
                return
            await asyncio.sleep(interval)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/{job_id}/results", response_model=ResultsPage)
async def job_results(
    job_id: str,
    svc: Service = Depends(service),
    who: Principal = Who,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(100, ge=1, le=1000),
) -> ResultsPage:
    await _info(job_id, svc, who)
    rows = await svc.store.results(job_id, offset, limit)
    return ResultsPage(job=job_id, offset=offset, limit=limit, results=[RowOutcome(**r) for r in rows])


async def _all_results(job_id: str, svc: Service) -> AsyncIterator[list[dict]]:
    offset = 0
    while page := await svc.store.results(job_id, offset, EXPORT_PAGE):
        yield page
        offset += len(page)


@router.get("/{job_id}/results.jsonl", response_class=StreamingResponse)
async def download_jsonl(job_id: str, svc: Service = Depends(service), who: Principal = Who) -> StreamingResponse:
    await _info(job_id, svc, who)

    async def lines() -> AsyncIterator[str]:
        async for page in _all_results(job_id, svc):
            yield "".join(json.dumps(row) + "\n" for row in page)

    headers = {"Content-Disposition": f'attachment; filename="{job_id}.jsonl"'}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)


@router.get("/{job_id}/results.parquet", response_class=Response)
async def download_parquet(job_id: str, svc: Service = Depends(service), who: Principal = Who) -> Response:
    """Results as Parquet; each row's result is a JSON string column (methods' results differ in shape)."""
    await _info(job_id, svc, who)
    import pandas as pd

    records = [
        {"index": r["index"], "ok": r["ok"], "result": json.dumps(r["result"]), "error": r["error"]}
        async for page in _all_results(job_id, svc)
        for r in page
    ]
    buffer = io.BytesIO()
    frame = pd.DataFrame.from_records(records, columns=["index", "ok", "result", "error"])
    await asyncio.to_thread(frame.to_parquet, buffer, index=False)
    headers = {"Content-Disposition": f'attachment; filename="{job_id}.parquet"'}
    return Response(buffer.getvalue(), media_type="application/vnd.apache.parquet", headers=headers)


@router.post("/{job_id}/cancel", response_model=JobInfo)
async def cancel_job(job_id: str, svc: Service = Depends(service), who: Principal = Who) -> JobInfo:
    info = await _info(job_id, svc, who)
    if info.status not in TERMINAL:
        await svc.jobs.cancel(job_id)
    return await _info(job_id, svc, who)


@router.post("/{job_id}/resume", response_model=JobInfo)
async def resume_job(job_id: str, svc: Service = Depends(service), who: Principal = Who) -> JobInfo:
    """Run a cancelled or failed job's unfinished and failed rows; finished rows stay as they are."""
    info = await _info(job_id, svc, who)
    if info.status in ("failed", "cancelled"):
        await svc.store.set_status(job_id, "queued")
        await svc.jobs.start(job_id)
    return await _info(job_id, svc, who)
