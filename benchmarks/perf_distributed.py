"""Scaling on torch.distributed: the same certification with 1 process and with 2, in one run.

    python benchmarks/perf_distributed.py [--images 40] [--n 10000] [--procs 2]

Certifies the same Fashion-MNIST test images with a bundled expert, as a user types it:
  (a) `rsrouter certify ...` in 1 process with 1 thread (OMP_NUM_THREADS=1),
  (b) `torchrun --standalone --nproc-per-node P -m rsrouter -- certify ...`, 1 thread each,
and prints the wall times and the speed-up (a)/(b), of the whole command and of its
certification alone (each command's fixed start-up, measured in the same run with no input to
certify, subtracted; expect >= 1.7x with 2 processes on 2 cores); checks that both TSVs hold the
same certificates, and times the merge of P part files of the same size as rank 0 does it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def run(argv: list[str], cwd: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--expert", default="fashion-mnist-sigma0.50")
    args = parser.parse_args()
    skip = 10_000 // args.images
    certify = ["certify", "--model", args.expert, "--dataset", "fashion-mnist", "--N",
               str(args.n), "--skip", str(skip), "--max-index", str(skip * args.images),
               "--batch-size", "2500", "--no-progress"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    single = [sys.executable, "-m", "rsrouter"]
    multi = [torchrun, "--standalone", "--nproc-per-node", str(args.procs), "-m", "rsrouter", "--"]
    empty = [*certify[:certify.index("--max-index")], "--max-index", "0", "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start_one = run([*single, *empty, "--out", "e1.tsv"], tmp)  # start-up, nothing to do
        start_many = run([*multi, *empty, "--out", "e2.tsv"], tmp)
        one = run([*single, *certify, "--out", "one.tsv"], tmp)
        many = run([*multi, *certify, "--out", "many.tsv"], tmp)
        a = pd.read_csv(tmp / "one.tsv", sep="\t").drop(columns="time")
        b = pd.read_csv(tmp / "many.tsv", sep="\t").drop(columns="time")
        same = a.equals(b)
        merge = merge_cost(tmp / "one.tsv", args.procs)
    print(f"{args.images} Fashion-MNIST images, {args.expert}, n0 = 100, n = {args.n}; "
          f"1 thread per process; wall time of the whole command (start-up included)")
    print("| run | command (s) | speed-up | start-up (s) | certification (s) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| 1 process | {one:.1f} | 1.00x | {start_one:.1f} | {one - start_one:.1f} | 1.00x |")
    print(f"| {args.procs} processes (torchrun, gloo) | {many:.1f} | {one / many:.2f}x | "
          f"{start_many:.1f} | {many - start_many:.1f} | "
          f"{(one - start_one) / (many - start_many):.2f}x |")
    print(f"\nsame certificates in both TSVs: {same}")
    print(f"merge of {args.procs} parts ({len(a)} rows): {1000 * merge:.1f} ms")


def merge_cost(tsv: Path, procs: int) -> float:
    """Split a finished TSV into ``procs`` parts as ranks write them, time the merge."""
    import json

    from rsrouter.results.runs import merge_parts

    lines = tsv.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    settings = json.loads(Path(f"{tsv}.json").read_text())
    out = tsv.with_name("merged.tsv")
    for rank in range(procs):
        part = out.with_name(f"{out.name}.part{rank}of{procs}")
        part.write_text("\n".join([header, *rows[rank::procs]]) + "\n")
        Path(f"{part}.json").write_text(json.dumps(settings))
    indices = [int(r.split("\t", 1)[0]) for r in rows]
    t0 = time.perf_counter()
    merge_parts(out, header.split("\t"), settings, indices)
    elapsed = time.perf_counter() - t0
    assert out.read_text().splitlines()[1:] == rows
    return elapsed


if __name__ == "__main__":
    main()
