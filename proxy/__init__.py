"""policy-sidecar: a transparent policy proxy for LLM APIs."""

__version__ = "0.1.0"
