"""Helpers for tests and benchmarks: local servers that stand in for real ones."""
