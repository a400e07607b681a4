"""Pydantic models at the API boundary: what each route takes and returns."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, create_model, model_validator

from xplain.batch.runner import Progress, RowOutcome
from xplain.blackbox import LLMClassifierSpec
from xplain.blackbox.schema import Category, ColumnKind
from xplain.data.demo import DEMO_MODELS
from xplain.methods.catalog import INPUT_KINDS, Method, catalog
from xplain.validation import SLUG

DemoName = Literal[tuple(DEMO_MODELS)]  # type: ignore[valid-type]

ModelName = Field(pattern=SLUG, description="Letters, digits, _ . - (at most 100), not starting with a dot.")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSource(Strict):
    """Exactly one place a model comes from. Never an upload: files are read only from the operator's directory."""

    file: str | None = Field(None, description="A .skops or .joblib/.pkl file inside XPLAIN_TRUSTED_MODEL_DIR.")
    import_path: str | None = Field(None, description="`package.module:object`, under XPLAIN_TRUSTED_IMPORT_PREFIXES.")
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        max_length=2000,
        description="An HTTP endpoint taking {'inputs': [...]}, on a host in XPLAIN_ALLOWED_MODEL_HOSTS.",
    )
    demo: DemoName | None = Field(None, description="A built-in demo model.")
    llm: LLMClassifierSpec | None = Field(
        None, description="An LLM classifier: a prompt template with {text}, its labels' words, where it runs."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of file, import_path, url, demo, llm (got {given or 'none'})")
        return self


class ReferenceData(Strict):
    """Rows like the model's training data, so the chat's tools have rows to talk about."""

    file: str = Field(min_length=1, max_length=300, description="A CSV file inside XPLAIN_DATA_DIR.")
    label_column: str | None = Field(None, max_length=200, description="The column of true labels, if any.")
    text_column: str | None = Field(None, max_length=200, description="Text models: the column holding the text.")


class ColumnOverride(Strict):
    """What a registration says about one column of a table, over what was inferred from the model and data."""

    kind: ColumnKind | None = None
    categories: list[Category] | None = Field(None, max_length=10_000)
    min: float | None = None
    max: float | None = None
    missing_rate: float | None = Field(None, ge=0, le=1)
    immutable: bool | None = None


class ModelRegistration(Strict):
    name: str = ModelName
    source: ModelSource
    kind: Literal["tabular", "text", "module"] | None = Field(None, description="Inferred for scikit-learn models.")
    classes: list[str | int] | None = None
    feature_names: list[str] | None = Field(None, max_length=10_000)
    trusted_types: list[str] = Field(default_factory=list, description="skops types to trust beyond the defaults.")
    replace: bool = Field(False, description="Replace a registered model of this name (demos cannot be replaced).")
    reference: ReferenceData | None = Field(
        None,
        description="Reference rows (the demos bring theirs): the chat's rows, the methods' background, and where "
        "a table's column kinds, categories and ranges are learnt from.",
    )
    columns: dict[str, ColumnOverride] | None = Field(
        None, max_length=10_000, description="Tables: column -> what to override of what was inferred about it."
    )

    @model_validator(mode="after")
    def _demo_brings_its_own_rows(self) -> ModelRegistration:
        if self.source.demo is not None and self.reference is not None:
            raise ValueError(f"the demo {self.source.demo!r} brings its own reference rows; leave `reference` out")
        return self

    @model_validator(mode="after")
    def _llm_names_its_own(self) -> ModelRegistration:
        spec = self.source.llm
        if spec is None:
            return self
        if self.classes is not None or self.feature_names is not None:
            raise ValueError("an LLM classifier names its classes in source.llm.labels and its features in "
                             "source.llm.feature_names; leave classes and feature_names out")
        if self.kind is not None and self.kind != spec.kind:
            raise ValueError(f"this LLM classifier is a {spec.kind} model (tabular when source.llm.feature_names is "
                             f"given, else text), not {self.kind}")
        return self


class ModelInfo(BaseModel):
    name: str
    kind: str
    source: ModelSource
    classes: list[Any] | None
    feature_names: list[str] | None
    columns: list[dict[str, Any]] | None = Field(
        None, description="Tables: each column's kind, categories, range and missing rate, as inferred or overridden."
    )
    queries: dict[str, Any]
    llm_prompt: str | None = Field(
        None,
        description="LLM classifiers: the exact prompt the LLM reads, `{text}` where the input goes (a chat as the "
        "LLM's chat template renders it, special tokens included); shown once it has scored a row (never for a chat "
        "sent as turns to a server that renders them itself).",
    )
    llm_scoring: dict[str, int] | None = Field(
        None,
        description="LLM classifiers: rows scored so far by each way their LLM scores (next_token: one request "
        "per row that a server's prefix cache serves; prompt_logprobs / echo: the labels read back as prompt; "
        "prefix_tree: the embedded engine).",
    )


class PredictRequest(Strict):
    inputs: list[Any] = Field(min_length=1, description="Rows: lists of numbers / objects by feature, or texts.")


class PredictResponse(BaseModel):
    model: str
    predictions: list[dict[str, Any] | None]
    errors: list[str | None]


class JobRequest(Strict):
    model: str | None = Field(
        None, pattern=SLUG, description="The registered model (not needed by iprompt and the classifier methods)."
    )
    method: str = Field(description="A method of the catalog; GET /methods lists them.")
    options: dict[str, Any] = Field(default_factory=dict)
    rows: list[Any] | None = Field(None, description="The data inline (give rows or file).")
    file: str | None = Field(None, description="A CSV/JSONL/JSON/Parquet file inside XPLAIN_DATA_DIR.")
    column: str | None = Field(None, description="Use this column of the file as the row (e.g. `text`).")

    @model_validator(mode="after")
    def _one_source(self) -> JobRequest:
        if (self.rows is None) == (self.file is None):
            raise ValueError("give exactly one of `rows` (inline data) or `file` (a file in the data directory)")
        takes_none = (method := catalog().get(self.method)) is not None and method.unit == "set" and not method.min_inputs
        if self.rows is not None and not self.rows and not takes_none:  # a set method of the whole data takes none
            raise ValueError("`rows` is empty")
        return self


class JobInfo(BaseModel):
    id: str
    model: str | None
    method: str
    options: dict[str, Any]
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    error: str | None = None
    progress: Progress
    created_at: float
    finished_at: float | None = None


class ResultsPage(BaseModel):
    job: str
    offset: int
    limit: int
    results: list[RowOutcome]


class MethodInfo(BaseModel):
    name: str
    description: str
    inputs: list[str]
    unit: Literal["row", "set"]
    uses_llm: bool
    needs_model: bool
    long_running: bool
    options_schema: dict[str, Any]
    result_schema: dict[str, Any]


class MethodRequest(Strict):
    model: str | None = Field(None, pattern=SLUG, description="The registered model (not needed by every method).")
    rows: list[Any] = Field(
        default_factory=list,
        max_length=5000,
        description="A row method's inputs (at most 64; larger sets go through /jobs), or a set method's items.",
    )
    options: dict[str, Any] = Field(default_factory=dict)


class MethodResponse(BaseModel):
    model: str | None
    method: str
    results: list[RowOutcome]


#: Rows one synchronous call may hold; a set method's input list may be longer (it is one unit of work).
SYNC_ROWS = 64


def _camel(method: Method) -> str:
    return "".join(part.title() for part in method.name.split("_"))


def method_request_model(method: Method) -> type[MethodRequest]:
    """`MethodRequest` as this method sees it, for REST's OpenAPI document and MCP's tool listing: `model` required
    where the method works on one, `rows` described by its input kinds, `options` typed by its options model (and
    parsed by the method itself, so that a misspelt option is named with the ones allowed)."""
    model = (
        (str, Field(pattern=SLUG, description="The model to work on; GET /models and list_models name them."))
        if method.needs_model
        else (str | None, Field(None, description="Not used by this method."))
    )
    what = " or ".join(INPUT_KINDS[kind] for kind in method.inputs)
    if method.unit == "row":
        rows_help = f"The inputs, one result each (at most {SYNC_ROWS}); each is {what}."
    else:
        rows_help = f"The inputs, which together give one result; each is {what}."
    optional_rows = method.unit == "set" and method.min_inputs == 0
    rows = (
        list[Any],
        Field(default_factory=list, max_length=5000, description=rows_help)
        if optional_rows
        else Field(max_length=5000, description=rows_help),
    )
    options_required = any(field.is_required() for field in method.options.model_fields.values())
    parsed = Annotated[method.options, PlainValidator(method.parse_options, json_schema_input_type=method.options)]
    options = (
        parsed,
        Field(description="The method's options.")
        if options_required
        else Field(default_factory=dict, description="The method's options; all have defaults."),
    )
    return create_model(f"{_camel(method)}Request", __base__=MethodRequest, model=model, rows=rows, options=options)


def method_response_model(method: Method) -> type[MethodResponse]:
    """`MethodResponse` with each outcome's `result` typed by the method's result model, for the OpenAPI document."""
    outcome = create_model(
        f"{_camel(method)}Outcome", __base__=RowOutcome, result=(Optional[method.result], None)  # noqa: UP007
    )
    return create_model(f"{_camel(method)}Response", __base__=MethodResponse, results=(list[outcome], ...))


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Readiness(BaseModel):
    ready: bool
    llm: str
    reason: str | None = None
