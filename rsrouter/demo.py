"""``rsrouter demo``: the main job on the embedded default (bundled Fashion-MNIST zoo)."""

from __future__ import annotations

from pathlib import Path

from .data import load_dataset, subset_indices
from .expert import load_expert_folder
from .results import plot_curves, read_tsv, summary_table
from .runs import certify_dataset

ZOO = Path(__file__).resolve().parents[1] / "experts"
DEMO_EXPERTS = ("fashion-mnist/sigma-0.25", "fashion-mnist/sigma-0.50", "fashion-mnist/sigma-1.00")


def run_demo(out: Path, *, num: int = 100, n: int = 2000, n0: int = 100, alpha: float = 0.001,
             batch_size: int = 2500, seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Certify ``num`` Fashion-MNIST test images with each bundled expert; table + plot."""
    dataset = load_dataset("fashion-mnist", "test")
    indices = subset_indices(len(dataset), max(1, len(dataset) // num))[:num]
    paths = {}
    for rel in DEMO_EXPERTS:
        expert = load_expert_folder(ZOO / rel)
        path = out / f"{expert.name}.tsv"
        settings = {"model": rel, "weights_sha256": expert.card.weights_sha256, "n0": n0, "n": n,
                    "alpha": alpha, "seed": seed, "indices": indices, "mode": expert.mode}
        certify_dataset(expert, dataset, indices, path, n0=n0, n=n, alpha=alpha,
                        batch_size=batch_size, seed=seed, settings=settings, progress=progress,
                        desc=f"certify {expert.name}")
        paths[expert.name] = path
    results = {name: read_tsv(p) for name, p in paths.items()}
    print(f"\nFashion-MNIST, {len(indices)} test images, n0={n0}, n={n}, alpha={alpha}")
    print("certified accuracy (%) at l2 radius r; ACR = average certified radius")
    print(summary_table(results).to_string())
    plot = plot_curves(results, out / "certified_accuracy.png",
                       title=f"Fashion-MNIST: {len(indices)} images, n={n}, alpha={alpha}")
    print(f"\nper-image certificates: {out}/*.tsv\nplot: {plot}")
    return paths
