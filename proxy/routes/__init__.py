"""HTTP routes: OpenAI-compatible endpoints through the chain, pass-through, admin."""
