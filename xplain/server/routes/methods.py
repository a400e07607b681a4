"""The catalog over REST: `GET /methods` lists it, `POST /methods/{name}` runs any method on a few inputs and
answers at once (datasets and long work go through /jobs). One route per method, generated, none written by hand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from xplain.errors import NotFound
from xplain.methods.catalog import Method, catalog, unknown_method
from xplain.server.deps import Principal, Service, principal, service
from xplain.server.schemas import (
    MethodInfo,
    MethodRequest,
    MethodResponse,
    method_request_model,
    method_response_model,
)

def make_router() -> APIRouter:
    """The routes of the catalog as it is when the app is made: a method registered before then has its route."""
    router = APIRouter(prefix="/methods", tags=["methods"])

    @router.get("", response_model=list[MethodInfo])
    async def list_methods() -> list[dict[str, Any]]:
        """Every capability: name, description, input kinds, options and result schemas."""
        return [m.describe() for m in catalog().values()]

    for method in catalog().values():
        router.add_api_route(
            f"/{method.name}",
            _route_for(method),
            methods=["POST"],
            response_model=None,  # answered as run; the document shows the method's typed results
            responses={200: {"model": method_response_model(method), "description": "One outcome per unit of work."}},
            summary=method.description,
            description=f"{method.description}\n\nInputs: {', '.join(method.inputs)} ({method.unit})."
            + (" This method can take minutes on the embedded model: POST /jobs runs it with progress." if method.long_running else ""),
        )

    @router.post("/{name}", include_in_schema=False)
    async def no_such_method(name: str) -> None:
        """Any other name (the generated routes above answer the real ones): a 404 that says which methods exist."""
        raise NotFound(unknown_method(name))

    return router


def _route_for(method: Method):
    """The route of one method: its body typed by the method's own request model, so that the OpenAPI document
    shows each method's options (and a misspelt one is refused before any work). Calls are admitted against the
    backend's capacity: 503 with Retry-After at once when one could not finish in time."""

    async def run_method(
        body: MethodRequest, request: Request, svc: Service = Depends(service), who: Principal = Depends(principal)
    ) -> MethodResponse:
        async with request.app.state.admission.admit(method.name):
            return await svc.run_method(method, body, who.owner)

    run_method.__annotations__["body"] = method_request_model(method)  # a class made here, not a name to look up
    run_method.__name__ = f"run_{method.name}"
    return run_method
