"""Demo and test helpers: a scriptable fake OpenAI-compatible upstream (see ``fake_upstream``)."""
