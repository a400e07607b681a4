"""Agent tools: the catalog's methods as LangChain tools on one model and its data, generated from their
declarations (`xplain.tools.catalog_tools`), with pydantic argument schemas and compact JSON results."""

from xplain.tools.catalog_tools import build_tools, tool_names
from xplain.tools.context import DEMOS, ProbeContext, demo_context

__all__ = ["DEMOS", "ProbeContext", "build_tools", "demo_context", "tool_names"]
