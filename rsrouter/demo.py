"""``rsrouter demo``: the main job on the embedded default.

Certifies a subset of Fashion-MNIST test images with each bundled expert (sigma 0.25, 0.5, 1.0)
and with the bundled router's routed ensemble, on the same inputs, then prints the certified
accuracy table, the router's behaviour, and writes the curves (PNG) and per-input TSVs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .bench import certify_methods, report
from .data import load_dataset, subset_indices
from .paths import PROJECT_REGISTRY
from .registry import Registry
from .results import markdown_table
from .router import load_routed

ROUTER = PROJECT_REGISTRY.parent / "routers" / "fashion-mnist"


def run_demo(out: Path, *, num: int = 100, n: int = 2000, n0: int = 100, alpha: float = 0.001,
             batch_size: int = 2500, seed: int = 0, progress: bool = True) -> Path:
    """Certify ``num`` test images with every bundled expert and the routed ensemble."""
    routed = load_routed(ROUTER, registry=Registry())
    dataset = load_dataset("fashion-mnist", "test")
    indices = subset_indices(len(dataset), max(1, len(dataset) // num))[:num]
    experts, routed_paths = certify_methods(routed.experts, routed, dataset, indices, out, n0=n0,
                                            n=n, alpha=alpha, batch_size=batch_size, seed=seed,
                                            progress=progress)
    title = f"Fashion-MNIST: {len(indices)} test images, n0={n0}, n={n}, alpha={alpha}"
    table = report(experts, out, title=title, routed=routed_paths)
    routing = json.loads((out / "summary.json").read_text())["routing"]["routed"]
    print(f"\n{title}\ncertified accuracy (%) at l2 radius r; ACR = average certified radius\n")
    print(markdown_table(table))
    print(f"\nrouter (sigma {routed.router.sigma}): mean certified radius "
          f"{routing['router_mean_radius']}, choices {routing['choices']}")
    print(f"\nper-input certificates: {out}/*.tsv\ntable: {out}/summary.md\n"
          f"plot: {out}/certified_accuracy.png")
    return out
