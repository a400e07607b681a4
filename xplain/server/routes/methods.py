"""One route per row method, for a few rows answered at once; datasets go through /jobs."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from xplain.batch.methods import ROW_METHODS, MethodContext, RowMethod
from xplain.batch.runner import RowOutcome, describe_error
from xplain.server.deps import Service, service
from xplain.server.schemas import MethodInfo, MethodRequest, MethodResponse

router = APIRouter(prefix="/methods", tags=["methods"])


@router.get("", response_model=list[MethodInfo])
async def list_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name=m.name, description=m.description, uses_llm=m.uses_llm, options_schema=m.options_model.model_json_schema()
        )
        for m in ROW_METHODS.values()
    ]


def _route_for(method: RowMethod):
    async def run_method(body: MethodRequest, svc: Service = Depends(service)) -> MethodResponse:
        _, blackbox = svc.registry.get(body.model)
        options = method.options_model.model_validate(body.options)
        results = await method.run(MethodContext(llm=svc.llm, blackbox=blackbox, reference=svc.registry.reference(body.model)), body.rows, options)
        outcomes = [
            RowOutcome(index=i, ok=False, error=describe_error(r))
            if isinstance(r, Exception)
            else RowOutcome(index=i, ok=True, result=r)
            for i, r in enumerate(results)
        ]
        return MethodResponse(model=body.model, method=method.name, results=outcomes)

    run_method.__name__ = f"run_{method.name}"
    return run_method


for _method in ROW_METHODS.values():
    router.add_api_route(
        f"/{_method.name}",
        _route_for(_method),
        methods=["POST"],
        response_model=MethodResponse,
        summary=_method.description,
    )
