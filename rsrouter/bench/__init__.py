"""Benchmark harness: certify every method on the same inputs, compare, tabulate, plot."""

from .compare import certify_methods, compose_from_counts, oracle_frame, report, routing_stats

__all__ = ["certify_methods", "compose_from_counts", "oracle_frame", "report", "routing_stats"]
