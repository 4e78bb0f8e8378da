"""Durable jobs: exports, analysis, timestamps and clean-ups, after the answer."""
