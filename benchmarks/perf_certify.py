"""Certification throughput and memory: rsrouter against a plain Cohen-style loop and against
the model's own forward limit, in one run.

    python benchmarks/perf_certify.py [--images 10] [--n 10000] [--batch-size 2500] [--device cpu]

Certifies the same Fashion-MNIST test images with
  (i)   a plain Cohen et al. loop written here (batch of copies + randn + argmax + counts, fp32),
  (ii)  rsrouter fp32 through the Python API, (iii) compile=True, (iv) bf16 autocast,
and prints noisy forwards per second (best of 3 interleaved rounds), in two fresh processes:
"plain" is a plain script as it runs by itself (glibc's allocator as is, RSROUTER_MALLOC_TUNING=0);
"api" is what a user of the Python API gets (rsrouter tunes the allocator when a certification
starts; the loop (i) benefits there too). In the "api" process it also measures the forward
limit: the model's pure forward + argmax on a ready batch (no noise, no counting), eager,
compiled and bf16, and prints each certification throughput as a fraction of its limit (target
>= 0.90 in fp32 eager and compile). Then, each in a fresh process, the peak memory of rsrouter
certifying one image at n = 1,000 and n = 100,000 (target: within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from rsrouter.certify.smoothing import Smooth
from rsrouter.data import load_dataset
from rsrouter.models import create_classifier
from rsrouter.runtime import tune_allocator

ZOO_EXPERT = Path(__file__).resolve().parents[1] / "experts" / "fashion-mnist" / "sigma-0.50"


def load_model() -> tuple[torch.nn.Module, str]:
    if (ZOO_EXPERT / "config.json").is_file():
        from rsrouter.registry.expert import load_expert_folder

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


def throughput(args, model, xs, device) -> dict[str, float]:
    """Noisy forwards per second of each method: best of ``--rounds`` interleaved rounds; in the
    "api" process also the forward limit of each mode (a ready batch, no noise, no counting)."""
    sigma, n0, n, bs = 0.5, 100, args.n, args.batch_size
    total = len(xs) * (n0 + n)
    xs = xs.to(device)

    def baseline():
        for x in xs:
            cohen_loop(model, x, n0, bs, sigma)
            cohen_loop(model, x, n, bs, sigma)

    methods = {"(i) Cohen-style loop, fp32": baseline}
    variants = {"(ii) rsrouter fp32": {}, "(iii) rsrouter compile=True": {"compile": True},
                "(iv) rsrouter bf16 autocast": {"precision": "bf16"}}
    if args.child == "plain":
        variants = {"(ii) rsrouter fp32": {}}
    ready = (xs[0] + sigma * torch.randn((bs, *xs.shape[1:]), device=device)).contiguous()
    for name, kw in variants.items():
        smooth = Smooth(model, 10, sigma, **kw)
        if kw.get("compile"):  # warm-up: compilation time is reported apart
            t = timed(lambda s=smooth: s.certify_batch(xs[:1], n0, bs, 0.001, batch_size=bs))
            print(f"torch.compile warm-up: {t:.1f} s (once per process)", file=sys.stderr)
        methods[name] = lambda s=smooth: s.certify_batch(xs, n0, n, 0.001, batch_size=bs, seed=0)
        if args.child == "api":
            batches = -(-total // bs)
            methods[f"limit {name}"] = (lambda s=smooth, k=batches: _forwards(s, ready, bs, k))
    best = {name: float("inf") for name in methods}
    for _ in range(args.rounds):  # interleaved, so drifts of the machine hit every method alike
        for name, fn in methods.items():
            best[name] = min(best[name], timed(lambda f=fn: (f(), _sync(device))))
    out = {name: total / t for name, t in best.items() if not name.startswith("limit")}
    for name, t in best.items():
        if name.startswith("limit"):
            out[name] = -(-total // bs) * bs / t
    return out


@torch.no_grad()  # as certification runs it
def _forwards(smooth, ready, batch_size: int, batches: int) -> None:
    for _ in range(batches):
        smooth._classify(ready, batch_size)


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


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
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("plain", "api"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        tune_allocator()
        return memory_probe(args.memory_probe, args.batch_size)
    if args.child:
        model, _ = load_model()
        model = model.to(args.device)
        xs = load_dataset("fashion-mnist", "test").images[: args.images * 100 : 100]
        print(json.dumps(throughput(args, model, xs, args.device)))
        return

    model, what = load_model()
    print(f"model: {what}; {args.images} images, n0=100, n={args.n}, batch {args.batch_size}, "
          f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"best of {args.rounds} interleaved rounds")
    runs = {}
    for child in ("plain", "api"):  # a fresh process each: the allocator is per process
        env = {**os.environ, "RSROUTER_MALLOC_TUNING": "0" if child == "plain" else "1"}
        out = subprocess.run([sys.executable, __file__, "--child", child, "--images",
                              str(args.images), "--n", str(args.n), "--batch-size",
                              str(args.batch_size), "--rounds", str(args.rounds), "--device",
                              args.device], capture_output=True, text=True, env=env)
        if out.returncode:
            sys.exit(f"the {child} run failed:\n{out.stderr[-3000:]}")
        lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
        runs[child] = json.loads(lines[-1])
    base = runs["plain"]["(i) Cohen-style loop, fp32"]
    api = runs["api"]
    print("\nnoisy forwards/s. 'plain': a script by itself (glibc's allocator as is); 'api': the "
          "Python API as users get it (rsrouter tunes the allocator when certifying). Ratios to "
          "(i) in the plain script; 'of limit': certification over the model's pure forward + "
          "argmax on a ready batch in the same mode and process.")
    print(f"\n{'method':30s} {'plain':>9s} {'api':>9s} {'vs (i) plain':>13s} {'limit':>9s} "
          f"{'of limit':>9s}")
    for name in ("(i) Cohen-style loop, fp32", "(ii) rsrouter fp32", "(iii) rsrouter compile=True",
                 "(iv) rsrouter bf16 autocast"):
        plain = runs["plain"].get(name)
        limit = api.get(f"limit {name}")
        print(f"{name:30s} {plain or float('nan'):9.0f} {api[name]:9.0f} "
              f"{api[name] / base:12.2f}x {limit or float('nan'):9.0f} "
              f"{(api[name] / limit) if limit else float('nan'):9.2f}")

    print("\npeak memory, one image, batch 1000, fresh process each:")
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
