"""Register, list, describe, predict with and remove the black boxes the service explains."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from xplain.methods.catalog import get_method, run_units
from xplain.server.deps import Principal, Service, principal, service
from xplain.server.schemas import ModelInfo, ModelRegistration, PredictRequest, PredictResponse

router = APIRouter(prefix="/models", tags=["models"])


Who = Depends(principal)


@router.post("", response_model=ModelInfo, status_code=201)
async def register_model(body: ModelRegistration, svc: Service = Depends(service), who: Principal = Who) -> ModelInfo:
    """The model belongs to the API key that registers it: other keys neither see nor use it."""
    await svc.registry.register(body, who.owner)
    return svc.model_info(svc.registry.key_for(body.name, who.owner))


@router.get("", response_model=list[ModelInfo])
async def list_models(svc: Service = Depends(service), who: Principal = Who) -> list[ModelInfo]:
    """This key's models and the shared ones (the demos)."""
    return [svc.model_info(key) for key in svc.registry.visible(who.owner)]


@router.get("/{name}", response_model=ModelInfo)
async def describe_model(name: str, svc: Service = Depends(service), who: Principal = Who) -> ModelInfo:
    return svc.model_info(svc.registry.key_for(name, who.owner))


@router.delete("/{name}", status_code=204)
async def remove_model(name: str, svc: Service = Depends(service), who: Principal = Who) -> None:
    await svc.registry.remove(svc.registry.key_for(name, who.owner), who.owner)


@router.post("/{name}/predict", response_model=PredictResponse)
async def predict(
    name: str, body: PredictRequest, svc: Service = Depends(service), who: Principal = Who
) -> PredictResponse:
    if len(body.inputs) > svc.settings.max_batch_rows:
        raise ValueError(f"{len(body.inputs)} inputs; at most {svc.settings.max_batch_rows} (XPLAIN_MAX_BATCH_ROWS)")
    method = get_method("predict")  # the same catalog method as POST /methods/predict, without a row limit
    results = await run_units(method, svc.context(method, name, who.owner), body.inputs, method.parse_options({}))
    return PredictResponse(
        model=name,
        predictions=[None if isinstance(r, Exception) else r.prediction.model_dump(exclude_none=True) for r in results],
        errors=[str(r) if isinstance(r, Exception) else None for r in results],
    )
