"""Halton Meter: a local meter for LLM API spend."""

__version__ = "0.1.0"
