"""Train the bundled expert zoo under experts/ with rsrouter's own recipe.

    python benchmarks/build_zoo.py [--only fashion-mnist|digits] [--out experts]

Each expert is a Hub-layout folder; rerunning skips finished experts and resumes interrupted ones.
Experts learn on the "train" split: the official training set less the validation hold-out
(rsrouter.data.VALIDATION_SIZE), which stays unseen for choosing routers.
Certified accuracy is added to the cards by `rsrouter experts certify-card` (see the README).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rsrouter.training.expert import TrainConfig, train_expert

ROOT = Path(__file__).resolve().parents[1] / "experts"
ZOO = {
    "fashion-mnist": dict(arch="cnn_small", epochs=30, batch_size=128, lr=0.05),
    "digits": dict(arch="cnn_small", epochs=60, batch_size=64, lr=0.05),
}
SIGMAS = (0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(ZOO))
    parser.add_argument("--out", type=Path, default=ROOT, help="zoo folder (default experts/)")
    args = parser.parse_args()
    for dataset, recipe in ZOO.items():
        if args.only and dataset != args.only:
            continue
        for sigma in SIGMAS:
            name = f"{dataset}-sigma{sigma:.2f}"
            out = args.out / dataset / f"sigma-{sigma:.2f}"
            train_expert(TrainConfig(dataset=dataset, sigma=sigma, **recipe), out, name=name)
            print(f"{name}: {out}")


if __name__ == "__main__":
    main()
