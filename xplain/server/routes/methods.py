"""The catalog over REST: `GET /methods` lists it, `POST /methods/{name}` runs any method on a few inputs and
answers at once (datasets and long work go through /jobs). One route per method, generated, none written by hand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from xplain.errors import NotFound
from xplain.methods.catalog import Method, catalog, unknown_method
from xplain.server.deps import Principal, Service, principal, service
from xplain.server.schemas import MethodInfo, MethodRequest, MethodResponse

router = APIRouter(prefix="/methods", tags=["methods"])


@router.get("", response_model=list[MethodInfo])
async def list_methods() -> list[dict[str, Any]]:
    """Every capability: name, description, input kinds, options and result schemas."""
    return [m.describe() for m in catalog().values()]


def _route_for(method: Method):
    async def run_method(
        body: MethodRequest, request: Request, svc: Service = Depends(service), who: Principal = Depends(principal)
    ) -> MethodResponse:
        async with request.app.state.admission.admit(method.name):  # 503 + Retry-After at once when at capacity
            return await svc.run_method(method, body, who.owner)

    run_method.__name__ = f"run_{method.name}"
    return run_method


for _method in catalog().values():
    router.add_api_route(
        f"/{_method.name}",
        _route_for(_method),
        methods=["POST"],
        response_model=MethodResponse,
        summary=_method.description,
        description=f"{_method.description}\n\nInputs: {', '.join(_method.inputs)} ({_method.unit}). "
        "Options: see GET /methods for the schema."
        + (" This method can take minutes on the embedded model: POST /jobs runs it with progress." if _method.long_running else ""),
    )


@router.post("/{name}", include_in_schema=False)
async def no_such_method(name: str) -> None:
    """Any other name (the generated routes above answer the real ones): a 404 that says which methods exist."""
    raise NotFound(unknown_method(name))
