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
from xplain.server.deps import Service, service
from xplain.server.schemas import JobInfo, JobRequest, ResultsPage

router = APIRouter(prefix="/jobs", tags=["jobs"])

TERMINAL = {"completed", "failed", "cancelled"}
EXPORT_PAGE = 1000


async def _info(job_id: str, svc: Service) -> JobInfo:
    job, progress = await svc.jobs.snapshot(job_id)
    return JobInfo(
        id=job["id"],
        model=job["model"],
        method=job["method"],
        options=job["options"],
        status=job["status"],
        error=job["error"],
        progress=progress,
        created_at=job["created_at"],
        finished_at=job["finished_at"],
    )


@router.post("", response_model=JobInfo, status_code=202)
async def submit_job(body: JobRequest, svc: Service = Depends(service)) -> JobInfo:
    """Validate everything before storing anything: a refused job leaves no trace."""
    method = get_method(body.method)
    svc.context(method, body.model)
    options = method.parse_options(body.options)
    if body.file is not None:
        path = resolve_data_file(body.file, svc.settings.data_dir)
        rows = await asyncio.to_thread(read_rows, path, column=body.column)
    else:
        rows = body.rows or []
    if len(rows) > svc.settings.max_batch_rows:
        raise ValueError(f"{len(rows)} rows; a job holds at most {svc.settings.max_batch_rows} (XPLAIN_MAX_BATCH_ROWS)")
    if not rows:
        raise ValueError("the data file has no rows")
    rows = units_for(method, rows)
    job_id = await svc.jobs.submit(body.model, body.method, options.model_dump(mode="json"), rows)
    return await _info(job_id, svc)


@router.get("", response_model=list[JobInfo])
async def list_jobs(svc: Service = Depends(service), limit: int = Query(50, ge=1, le=500)) -> list[JobInfo]:
    return [await _info(job["id"], svc) for job in await svc.store.jobs(limit)]


@router.get("/{job_id}", response_model=JobInfo)
async def job_status(job_id: str, svc: Service = Depends(service)) -> JobInfo:
    return await _info(job_id, svc)


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(
    job_id: str, request: Request, svc: Service = Depends(service), interval: float = Query(0.5, ge=0.05, le=10)
) -> StreamingResponse:
    """Progress as server-sent events (`event: progress`), ending with `event: end` when the job stops."""
    await _info(job_id, svc)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        while True:
            info = await _info(job_id, svc)
            kind = "end" if info.status in TERMINAL else "progress"
            yield f"event: {kind}\ndata: {info.model_dump_json()}\n\n"
            if kind == "end" or await request.is_disconnected():
                return
            await asyncio.sleep(interval)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/{job_id}/results", response_model=ResultsPage)
async def job_results(
    job_id: str,
    svc: Service = Depends(service),
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> ResultsPage:
    await _info(job_id, svc)
    rows = await svc.store.results(job_id, offset, limit)
    return ResultsPage(job=job_id, offset=offset, limit=limit, results=[RowOutcome(**r) for r in rows])


async def _all_results(job_id: str, svc: Service) -> AsyncIterator[list[dict]]:
    offset = 0
    while page := await svc.store.results(job_id, offset, EXPORT_PAGE):
        yield page
        offset += len(page)


@router.get("/{job_id}/results.jsonl", response_class=StreamingResponse)
async def download_jsonl(job_id: str, svc: Service = Depends(service)) -> StreamingResponse:
    await _info(job_id, svc)

    async def lines() -> AsyncIterator[str]:
        async for page in _all_results(job_id, svc):
            yield "".join(json.dumps(row) + "\n" for row in page)

    headers = {"Content-Disposition": f'attachment; filename="{job_id}.jsonl"'}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)


@router.get("/{job_id}/results.parquet", response_class=Response)
async def download_parquet(job_id: str, svc: Service = Depends(service)) -> Response:
    """Results as Parquet; each row's result is a JSON string column (methods' results differ in shape)."""
    await _info(job_id, svc)
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
async def cancel_job(job_id: str, svc: Service = Depends(service)) -> JobInfo:
    info = await _info(job_id, svc)
    if info.status not in TERMINAL:
        await svc.jobs.cancel(job_id)
    return await _info(job_id, svc)


@router.post("/{job_id}/resume", response_model=JobInfo)
async def resume_job(job_id: str, svc: Service = Depends(service)) -> JobInfo:
    """Run a cancelled or failed job's unfinished and failed rows; finished rows stay as they are."""
    info = await _info(job_id, svc)
    if info.status in ("failed", "cancelled"):
        await svc.store.set_status(job_id, "queued")
        await svc.jobs.start(job_id)
    return await _info(job_id, svc)
