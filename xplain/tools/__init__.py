"""Agent tools: probes of a black box and its data (and, as modules are added, the explanation methods), each a
LangChain tool with a pydantic argument schema, returning compact JSON that carries the numbers."""

from xplain.tools.context import DEMOS, ProbeContext, demo_context
from xplain.tools.registry import build_tools, register_tool, registered_tool_names

__all__ = ["DEMOS", "ProbeContext", "build_tools", "demo_context", "register_tool", "registered_tool_names"]
