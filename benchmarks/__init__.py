"""Benchmarks of qes_async: each figure is a ratio against a baseline measured in the same run.

Run them all with ``python -m benchmarks`` (``--quick`` for a smoke run with small counts).
"""
