"""Explanation methods: pure async functions of (LLM, black box, data, options) that return pydantic results."""
