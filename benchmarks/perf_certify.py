"""Certification throughput and memory: rsrouter against a plain Cohen-style loop, in one run.

    python benchmarks/perf_certify.py [--images 10] [--n 10000] [--batch-size 2500]

Certifies the same Fashion-MNIST test images with
  (i)   a plain Cohen et al. loop written here (batch of copies + randn + argmax + counts, fp32),
  (ii)  rsrouter fp32, (iii) rsrouter compile=True, (iv) rsrouter bf16 autocast,
and prints noisy forwards per second (best of 3 interleaved rounds) with each ratio to (i), twice:
in a process with glibc's default allocator and in one with rsrouter's allocator tuning (see
rsrouter/runtime.py), every method alike. Then, each in a fresh process, the peak memory of
rsrouter certifying one image at n = 1,000 and n = 100,000. Targets: (ii) >= 1.0x, (iii) >= 1.8x,
peak at n = 100,000 within 10% of n = 1,000.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from rsrouter.data import load_dataset
from rsrouter.models import create_classifier
from rsrouter.runtime import tune_allocator
from rsrouter.smoothing import Smooth

ZOO_EXPERT = Path(__file__).resolve().parents[1] / "experts" / "fashion-mnist" / "sigma-0.50"


def load_model() -> tuple[torch.nn.Module, str]:
    if (ZOO_EXPERT / "config.json").is_file():
        from rsrouter.expert import load_expert_folder

        return load_expert_folder(ZOO_EXPERT).model, f"bundled expert {ZOO_EXPERT.name}"
    torch.manual_seed(0)
    return create_classifier("cnn_small", 10, (1, 28, 28), (0.286,), (0.353,)).eval(), \
        "cnn_small (random init)"


@torch.no_grad()
def cohen_loop(model, x, num, batch_size, sigma, num_classes=10):
    """The baseline: Cohen et al.'s ``_sample_noise`` written plainly."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    remaining = num
    while remaining > 0:
        this = min(batch_size, remaining)
        remaining -= this
        batch = x.repeat((this, 1, 1, 1))
        noise = torch.randn_like(batch) * sigma
        predictions = model(batch + noise).argmax(1)
        counts += torch.bincount(predictions, minlength=num_classes)
    return counts


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def throughput(args, model, xs) -> dict[str, float]:
    """Noisy forwards per second of each method: best of ``--rounds`` interleaved rounds."""
    sigma, n0, n, bs = 0.5, 100, args.n, args.batch_size
    total = len(xs) * (n0 + n)

    def baseline():
        for x in xs:
            cohen_loop(model, x, n0, bs, sigma)
            cohen_loop(model, x, n, bs, sigma)

    methods = {"(i) Cohen-style loop, fp32": baseline}
    variants = {"(ii) rsrouter fp32": {}, "(iii) rsrouter compile=True": {"compile": True},
                "(iv) rsrouter bf16 autocast": {"precision": "bf16"}}
    for name, kw in variants.items():
        smooth = Smooth(model, 10, sigma, **kw)
        if kw.get("compile"):  # warm-up: compilation time is reported apart
            t = timed(lambda s=smooth: s.certify_batch(xs[:1], n0, bs, 0.001, batch_size=bs))
            print(f"torch.compile warm-up: {t:.1f} s (once per process)", file=sys.stderr)
        methods[name] = lambda s=smooth: s.certify_batch(xs, n0, n, 0.001, batch_size=bs, seed=0)
    best = {name: float("inf") for name in methods}
    for _ in range(args.rounds):  # interleaved, so drifts of the machine hit every method alike
        for name, fn in methods.items():
            best[name] = min(best[name], timed(fn))
    return {name: total / t for name, t in best.items()}


def memory_probe(n: int, batch_size: int) -> None:
    """Run in a fresh process: certify one image at ``n``; print peak RSS (MiB) as JSON.

    The batch is ``min(batch_size, 1000)`` so that both n = 1,000 and n = 100,000 fill it: memory
    is bounded by the batch, and this compares the same batch at different n.
    """
    batch = min(batch_size, 1000)
    model, _ = load_model()
    x = load_dataset("fashion-mnist", "test").images[0]
    smooth = Smooth(model, 10, 0.5)
    smooth.certify(x, 100, batch, 0.001, batch_size=batch)  # warm-up at the same batch
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    smooth.certify(x, 100, n, 0.001, batch_size=batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "batch": batch, "peak_mib": peak, "growth_mib": peak - base}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=2500)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("default", "tuned"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "tuned" or (args.memory_probe and not args.child):
        tune_allocator()
    if args.memory_probe:
        return memory_probe(args.memory_probe, args.batch_size)
    if args.child:
        model, _ = load_model()
        xs = load_dataset("fashion-mnist", "test").images[: args.images * 100 : 100]
        print(json.dumps(throughput(args, model, xs)))
        return

    model, what = load_model()
    print(f"model: {what}; {args.images} images, n0=100, n={args.n}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; best of {args.rounds} "
          "interleaved rounds")
    runs = {}
    for allocator in ("default", "tuned"):  # a fresh process each: the allocator is per process
        out = subprocess.run([sys.executable, __file__, "--child", allocator, "--images",
                              str(args.images), "--n", str(args.n), "--batch-size",
                              str(args.batch_size), "--rounds", str(args.rounds)],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"the {allocator}-allocator run failed:\n{out.stderr[-3000:]}")
        lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
        runs[allocator] = json.loads(lines[-1])
    base = runs["default"]["(i) Cohen-style loop, fp32"]
    tuned_base = runs["tuned"]["(i) Cohen-style loop, fp32"]
    print("\nnoisy forwards/s; ratios to (i) in the same process. 'default': glibc as is (what a "
          "plain script gets); 'tuned': rsrouter.runtime.tune_allocator() (what the rsrouter "
          "command does) applied to every method alike.")
    print(f"\n{'method':30s} {'default':>9s} {'ratio':>6s} {'tuned':>9s} {'ratio':>6s} "
          f"{'tuned vs default (i)':>21s}")
    for name in runs["default"]:
        d, t = runs["default"][name], runs["tuned"][name]
        print(f"{name:30s} {d:9.0f} {d / base:5.2f}x {t:9.0f} {t / tuned_base:5.2f}x "
              f"{t / base:20.2f}x")

    print("\npeak memory, one image, batch 1000, fresh process each (allocator tuned):")
    peaks = {}
    for n in (1_000, 100_000):
        out = subprocess.run([sys.executable, __file__, "--memory-probe", str(n),
                              "--batch-size", str(args.batch_size)],
                             capture_output=True, text=True, check=True)
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  n={n:>7,}: peak RSS {peaks[n]['peak_mib']:7.1f} MiB "
              f"(growth during certify {peaks[n]['growth_mib']:5.1f} MiB)")
    ratio = peaks[100_000]["peak_mib"] / peaks[1_000]["peak_mib"]
    print(f"  peak at n=100,000 / peak at n=1,000 = {ratio:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
