"""``rsrouter demo``: the main job on the embedded default, through the benchmark harness.

Certifies a subset of Fashion-MNIST test images with each bundled expert (sigma 0.25, 0.5, 1.0),
composes the bundled router's routed ensemble (with the set certificate it was chosen with on the
validation split) and the multiscale cascade from the same counts,
adds the envelope and the per-input oracle (labelled: not certificates), and prints the summary:
certified accuracy with 95% intervals, ACR, max regret. The folder it writes is a benchmark
result: `rsrouter leaderboard build runs/demo --out site` makes a page of it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..paths import PROJECT_REGISTRY
from ..protocol import Protocol
from .config import BenchConfig, parse_bench_config
from .harness import run_bench

ROUTER = PROJECT_REGISTRY.parent / "routers" / "fashion-mnist"
# a head on the sigma 1.0 expert's features, the cascade behind its lazy set certificate: the
# routed ensemble that pays for its samples (issue 21)
HEAD_FALLBACK = PROJECT_REGISTRY.parent / "routers" / "fashion-mnist-head-fallback"
DEMO_PROTOCOL = Protocol(n0=100, n=2000, alpha=0.001, seed=0, batch_size=2500)


def demo_config(num: int = 100, protocol: Protocol = DEMO_PROTOCOL) -> BenchConfig:
    """The embedded benchmark: ``num`` evenly spaced test images of Fashion-MNIST."""
    return replace(parse_bench_config({
        "name": "demo-fashion-mnist",
        "data": {"dataset": "fashion-mnist", "split": "test"},
        "inputs": {"every": max(1, 10_000 // num), "first": num},
        "choices_made_on": "none",
        "methods": [
            *({"type": "expert", "expert": f"fashion-mnist-sigma{s}"}
              for s in ("0.25", "0.50", "1.00")),
            {"type": "router", "name": "routed", "router": str(ROUTER), "certificate": "set",
             "chosen_on": "validation",
             "note": "The bundled router and its certificate were chosen on the validation "
                     "split (benchmarks/configs/validation/fashion-mnist.yaml)."},
            {"type": "router", "name": "routed-head-fallback", "router": str(HEAD_FALLBACK),
             "chosen_on": "validation",
             "note": "A head on the sigma 1.0 expert's features with the cascade behind its lazy "
                     "set certificate (its card's), chosen on the validation split "
                     "(benchmarks/configs/validation/fashion-mnist-fallback.yaml)."},
            {"type": "envelope"}, {"type": "oracle"}, {"type": "cascade", "name": "multiscale"},
        ]}), protocol=protocol)


def run_demo(out: Path, *, num: int = 100, protocol: Protocol = DEMO_PROTOCOL,
             progress: bool = True) -> Path:
    """Run the embedded benchmark into ``out`` and print its summary; returns ``out``."""
    out = run_bench(demo_config(num, protocol), out, progress=progress)
    print((out / "summary.md").read_text())
    print(f"per-input certificates: {out}/*.tsv\ncurves: {out}/curves.png\n"
          f"a leaderboard page: rsrouter leaderboard build {out} --out site")
    return out
