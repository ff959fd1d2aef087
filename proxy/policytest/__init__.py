"""``policy-sidecar test``: golden cases for a policy, run in-process through the real sidecar.

``cases`` (the case file format), ``runner`` (one real request per run, fake provider behind),
``output`` (answer text from JSON or SSE), ``report`` (text and JUnit XML, the CLI entry).
"""
