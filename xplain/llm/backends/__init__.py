"""LLM backends. Each is imported only when chosen, so vLLM (GPU) and llama.cpp stay optional at import time."""
