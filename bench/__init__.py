"""Benchmarks of the gateway (``python -m bench.overhead`` ...): scripts, not tests.

Results go to bench/results/*.json and BENCHMARKS.md.
"""
