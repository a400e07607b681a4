"""xplain: large language models that explain black-box models, and check their explanations."""

__version__ = "0.1.0"
