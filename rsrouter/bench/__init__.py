"""Benchmarks: a config (``config``), counts computed once per model (``store``) and read back
(``counts``), every method composed from them (``methods``, ``aces``), the run (``harness``, with
its method registry) and its report (``report``)."""
