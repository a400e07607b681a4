"""What every method result carries besides its answer: what it cost and which prompt versions produced it."""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from xplain.blackbox import BlackBox, count_evaluated
from xplain.llm import Usage, track_usage

class Cost(BaseModel):
    """LLM usage, black-box rows actually evaluated (cache hits and duplicates excluded), and wall time."""

    llm: Usage = Field(default_factory=Usage)
    blackbox_queries: int = Field(0, description="Rows the black box evaluated (answers from its cache not counted).")
    seconds: float = 0.0

    def split(self, n: int) -> list[Cost]:
        """The cost of work shared by `n` results, one share each; counts split exactly (the shares add up)."""

        def parts(total: int) -> list[int]:
            base, extra = divmod(total, n)
            return [base + (i < extra) for i in range(n)]

        usage = self.llm
        columns = zip(
            parts(usage.calls), parts(usage.prompt_tokens), parts(usage.completion_tokens), parts(usage.cache_hits),
            parts(self.blackbox_queries),
        )  # fmt: skip
        return [
            Cost(
                llm=Usage(calls=c, prompt_tokens=p, completion_tokens=o, cache_hits=h, seconds=usage.seconds / n),
                blackbox_queries=q,
                seconds=self.seconds / n,
            )
            for c, p, o, h, q in columns
        ]


class ShowsItself(BaseModel):
    """A result that saves itself as JSON which loads back into the same class (no pickle). It knows nothing of
    drawing: `xplain.display`, once imported, gives every result its Jupyter card, `.plot()` and `.to_frame()`."""

    #: Every result class by name, so that `load_result` finds the class a saved result came from.
    result_classes: ClassVar[dict[str, type[ShowsItself]]] = {}

    notes: list[str] = Field(
        default_factory=list, description="What was done to the input before the method saw it (e.g. a long text cut)."
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        ShowsItself.result_classes[cls.__name__] = cls

    def to_json(self, indent: int | None = None) -> str:
        """The result as JSON with a `kind` field naming its class, which `load_result` reads back."""
        return json.dumps({"kind": type(self).__name__, **self.model_dump(mode="json")}, indent=indent)


def load_result(saved: str | Path | dict[str, Any]) -> ShowsItself:
    """A result saved by `to_json` (a JSON text, a file holding one, or the parsed object), as the class it was
    saved from. JSON without a `kind` (e.g. from the REST API or a batch's results file) is matched by its fields."""
    if isinstance(saved, dict):
        data = dict(saved)  # its `kind` is popped below; the caller's object stays as it was
    else:
        text = Path(saved).read_text(encoding="utf-8") if _is_path(saved) else str(saved)
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a saved result is a JSON object")
    _import_result_classes()
    kind = data.pop("kind", None)
    cls = ShowsItself.result_classes.get(kind) if kind else _class_for(data)
    if cls is None:
        known = ", ".join(sorted(ShowsItself.result_classes))
        what = (
            f"unknown result kind {kind!r}"
            if kind
            else f"no result kind fits this JSON (method {data.get('method')!r})"
        )
        raise ValueError(f"{what}; known kinds: {known}")
    return cls.model_validate(data)


def _is_path(value: str | Path) -> bool:
    return isinstance(value, Path) or not value.lstrip().startswith(("{", "["))


def _import_result_classes() -> None:
    """Import every method module once, so that each result class has registered its kind."""
    import xplain.methods

    for module in pkgutil.iter_modules(xplain.methods.__path__):
        importlib.import_module(f"xplain.methods.{module.name}")


def _class_for(data: dict[str, Any]) -> type[ShowsItself] | None:
    """The class whose `method` default is the data's method (sasc, iprompt...), else the class whose required
    fields the data holds, the most specific leaf class (posthoc and baseline explanations, a counterfactual search's
    per-input explanations)."""
    method = data.get("method")
    for cls in ShowsItself.result_classes.values():
        field = cls.model_fields.get("method")
        if field is not None and isinstance(field.default, str) and field.default == method:
            return cls
    kinds = ShowsItself.result_classes.values()
    leaves = [cls for cls in kinds if not any(other is not cls and issubclass(other, cls) for other in kinds)]
    fits = []
    for cls in leaves:
        required = {name for name, field in cls.model_fields.items() if field.is_required()}
        if required and required <= data.keys():
            fits.append((len(required), cls))
    return max(fits, key=lambda fit: fit[0])[1] if fits else None


class MethodResult(ShowsItself):
    """Base of every method's result: JSON all the way out."""

    method: str
    prompt_versions: list[str] = Field(default_factory=list, description="`name@version` of each template used.")
    cost: Cost = Field(default_factory=Cost)


class CostMeter:
    def __init__(self) -> None:
        self.cost = Cost()


@contextmanager
def measure_cost(*blackboxes: BlackBox) -> Iterator[CostMeter]:
    """`with measure_cost(bb) as meter:` — afterwards `meter.cost` holds what the block spent (its own black-box rows,
    not those of other requests on the same model meanwhile)."""
    meter = CostMeter()
    started = time.perf_counter()
    with track_usage() as usage, count_evaluated() as rows:
        try:
            yield meter
        finally:
            meter.cost = Cost(
                llm=usage.usage,
                blackbox_queries=sum(rows[key] for key in {id(bb) for bb in blackboxes}),
                seconds=time.perf_counter() - started,
            )
