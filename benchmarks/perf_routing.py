"""Cost of routed certification relative to one expert, measured in one run on the same inputs.

    python benchmarks/perf_routing.py [--images 20] [--n 10000] [--batch-size 2500]
        [--router experts/routers/fashion-mnist-head] [--certificate pinned|set|lazy-set]

Certifies the same Fashion-MNIST test images (n0 = 100, n = N) with (a) one bundled expert alone
(sigma 0.50) and (b) the bundled router + its experts (the router and the chosen expert on the
same noise draws, each scaled by its sigma), and prints the time ratio (b) / (a) (target <= 1.15;
the Dual RS paper reports 22.58 s / 14.07 s = 1.60). It also prints the router's forward cost
relative to an expert's. ``--certificate`` (default: the one the router's card names, else
pinned); a router that shares an expert's forward pass (experts/routers/fashion-mnist-head)
needs no trunk pass of its own where that expert is chosen (its head still runs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rsrouter.data import load_dataset
from rsrouter.routing.load import load_routed
from rsrouter.runtime import tune_allocator

ROOT = Path(__file__).resolve().parents[1]
ROUTER = ROOT / "experts" / "routers" / "fashion-mnist"


@torch.no_grad()
def forwards_per_second(model, shape, batch_size: int, repeats: int = 5) -> float:
    x = torch.rand(batch_size, *shape)
    model(x)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(x)
    return repeats * batch_size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=2500)
    parser.add_argument("--router", default=str(ROUTER))
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--certificate", choices=("pinned", "set", "lazy-set"))
    args = parser.parse_args()
    tune_allocator()

    routed = load_routed(args.router)
    expert = next(e for e in routed.experts if e.sigma == 0.5)
    data = load_dataset("fashion-mnist", "test")
    indices = list(range(0, 10_000, 10_000 // args.images))[: args.images]
    xs = data.images[indices]
    kw = dict(batch_size=args.batch_size, seed=0, indices=indices)
    expert.certify_batch(xs[:1], 100, 500, 0.001, **{**kw, "indices": indices[:1]})  # warm-up

    single = both = float("inf")
    for _ in range(args.rounds):  # interleaved rounds, best of each: machine drift hits both
        t0 = time.perf_counter()
        expert.certify_batch(xs, 100, args.n, 0.001, **kw)
        single = min(single, time.perf_counter() - t0)
        t0 = time.perf_counter()
        certs = routed.certify_batch(xs, 100, args.n, 0.001, certificate=args.certificate,
                                     **kw)
        both = min(both, time.perf_counter() - t0)

    shape = tuple(routed.router.card.input_size)
    r_fps = forwards_per_second(routed.router.model, shape, args.batch_size)
    e_fps = forwards_per_second(expert.model, shape, args.batch_size)
    print(f"{len(xs)} Fashion-MNIST test images, n0=100, n={args.n}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, best of {args.rounds} "
          "interleaved rounds")
    print(f"router {routed.router.card.architecture}: {r_fps:,.0f} forwards/s; expert "
          f"{expert.card.architecture}: {e_fps:,.0f} forwards/s; router cost / expert cost = "
          f"{e_fps / r_fps:.3f}")
    print(f"one expert (sigma {expert.sigma}): {single:.2f} s ({single / len(xs):.3f} s/image)")
    print(f"routed ({args.certificate or routed.certificate.get('kind', 'pinned')}): "
          f"{both:.2f} s ({both / len(xs):.3f} s/image)")
    kind = args.certificate or routed.certificate.get("kind", "pinned")
    print(f"certificate: {kind}; router shares the forward pass of: "
          f"{routed.router.card.shares_forward_with or 'none'}")
    chosen = [getattr(c, "expert_name", None) or "abstain" for c in certs]
    print(f"router choices: { {k: chosen.count(k) for k in sorted(set(chosen))} }")
    print(f"routed / single = {both / single:.3f} (target <= 1.15; Dual RS paper: 1.60)")


if __name__ == "__main__":
    main()
