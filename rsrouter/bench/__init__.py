"""Benchmarks: a config (``config``), counts computed once per model (``store``), every method
composed from them (``methods``, ``aces``), the run (``harness``) and its report (``report``)."""
