"""The models xplain explains, behind one counted, cached, budgeted interface (DESIGN.md section 3)."""

from xplain.blackbox.errors import (
    BlackBoxError,
    BlackBoxFailedError,
    BlackBoxInputError,
    BlackBoxLoadError,
    BlackBoxOutputError,
    BlackBoxRowRejected,
    BlackBoxUnavailableError,
    QueryBudgetExceeded,
    UntrustedModelFileError,
)
from xplain.blackbox.loaders import (
    from_callable,
    from_estimator,
    from_http,
    from_import_path,
    from_pickle,
    from_skops,
    load_blackbox,
)
from xplain.blackbox.llm_classifier import (
    LLMClassifierSpec,
    LLMEndpoint,
    from_llm,
    from_llm_file,
    from_llm_spec,
)
from xplain.blackbox.model import BlackBox, Kind, QueryStats, WrapperOptions, count_evaluated
from xplain.blackbox.schema import Column, ColumnKind, TableSchema, infer_schema

__all__ = [
    "BlackBox",
    "BlackBoxError",
    "BlackBoxFailedError",
    "BlackBoxInputError",
    "BlackBoxRowRejected",
    "BlackBoxLoadError",
    "BlackBoxOutputError",
    "BlackBoxUnavailableError",
    "Column",
    "ColumnKind",
    "Kind",
    "LLMClassifierSpec",
    "LLMEndpoint",
    "QueryBudgetExceeded",
    "QueryStats",
    "TableSchema",
    "UntrustedModelFileError",
    "WrapperOptions",
    "count_evaluated",
    "from_callable",
    "from_estimator",
    "from_http",
    "from_import_path",
    "from_llm",
    "from_llm_file",
    "from_llm_spec",
    "from_pickle",
    "from_skops",
    "infer_schema",
    "load_blackbox",
]
