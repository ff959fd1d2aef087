"""Offline content detectors used by policy plugins.

Detectors are plain, synchronous, thread-safe libraries with no network access and no model downloads;
plugins wrap them. See ``proxy.detectors.injection`` for the prompt-injection detector.
``proxy.detectors.shared`` holds the per-request memo through which the injection and moderation
detectors share their normalisation and n-gram hashing of the same prompt text.
"""
