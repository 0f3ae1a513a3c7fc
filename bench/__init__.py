"""Benchmarks and evaluation harnesses (not part of the test run)."""
