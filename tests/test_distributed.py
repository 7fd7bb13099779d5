"""torchrun, for real: 2 processes on the gloo backend on CPU give the files 1 process gives.

Every draw is seeded by (seed, input index, stage), so sharding the inputs changes nothing but
the `time` column. A rank killed mid-run loses nothing: the same command resumes every shard.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from helpers import ROOT, certificates, subprocess_env

from rsrouter.cli import main

DIGITS = ["--dataset", "digits", "--N0", "30", "--N", "400", "--alpha", "0.01", "--skip", "10",
          "--batch-size", "500", "--no-progress"]


def torchrun(*args: str, cwd: Path, nproc: int = 2,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N -m rsrouter -- ARGS` as a user types it."""
    return subprocess.run(_torchrun_argv(nproc, args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env())


def _torchrun_argv(nproc: int, args) -> list[str]:
    exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    return [exe, "--standalone", "--nproc-per-node", str(nproc), "-m", "rsrouter", "--", *args]


def test_certify_on_two_ranks_equals_one_process(digits_expert, tmp_path):
    one = tmp_path / "one.tsv"
    assert main(["certify", "--model", digits_expert, *DIGITS, "--out", str(one)]) == 0
    done = torchrun("certify", "--model", digits_expert, *DIGITS, "--out", "two.tsv",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    two = tmp_path / "two.tsv"
    pd.testing.assert_frame_equal(certificates(one), certificates(two))
    assert json.loads((tmp_path / "one.tsv.json").read_text()) == \
        json.loads((tmp_path / "two.tsv.json").read_text())
    assert not list(tmp_path.glob("two.tsv.part*"))  # merged, parts removed
    assert done.stdout.count("certified accuracy") == 1  # one report, from rank 0


def test_a_killed_rank_loses_nothing(digits_expert, tmp_path):
    """SIGKILL one rank mid-run (torchrun then stops the other): one process resumes from the
    parts, the same torchrun command finishes, and the merged file has each input once."""
    reference = tmp_path / "one.tsv"
    slow = [*DIGITS[:-1], "--skip", "4", "--batch-size", "20", "--no-progress"]
    assert main(["certify", "--model", digits_expert, *slow, "--out", str(reference)]) == 0
    argv = _torchrun_argv(2, ["certify", "--model", digits_expert, *slow, "--out", "two.tsv"])
    proc = subprocess.Popen(argv, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    part = tmp_path / "two.tsv.part1of2"
    deadline = time.time() + 180
    while time.time() < deadline and not (part.exists() and part.read_text().count("\n") > 4):
        time.sleep(0.05)
    assert part.exists(), "rank 1 never wrote"
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                             text=True).stdout.split()  # torchrun's children: the ranks
    assert len(workers) == 2
    os.kill(int(workers[-1]), signal.SIGKILL)  # one rank dies
    proc.wait(timeout=120)
    assert proc.returncode != 0
    rows_before = sum(p.read_text().count("\n") - 1 for p in tmp_path.glob("two.tsv.part*"))
    assert 0 < rows_before < len(certificates(reference))
    # one process takes over part of the work (the parts of a 2-rank run merge into its run) ...
    assert main(["certify", "--model", digits_expert, *slow, "--max-index", "200", "--out",
                 str(tmp_path / "two.tsv")]) == 0
    assert not list(tmp_path.glob("two.tsv.part*"))
    # ... and the command that died finishes the rest
    again = torchrun("certify", "--model", digits_expert, *slow, "--out", "two.tsv",
                     cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    merged = certificates(tmp_path / "two.tsv")
    assert merged["idx"].is_unique
    pd.testing.assert_frame_equal(certificates(reference),
                                  merged.sort_values("idx", ignore_index=True))


def test_bench_and_router_labels_on_two_ranks(digits_expert, digits_expert_wide, tmp_path):
    """bench run: the same method TSVs; router train: the same labels, and a DDP-trained router
    that loads and certifies."""
    for folder, name in ((digits_expert, "d025"), (digits_expert_wide, "d050")):
        assert main(["experts", "register", folder, "--name", name]) == 0
    config = {"name": "two", "data": {"dataset": "digits"}, "inputs": {"every": 25},
              "protocol": {"n0": 20, "n": 300, "alpha": 0.01, "batch_size": 600},
              "methods": [{"type": "expert", "expert": "d025"},
                          {"type": "expert", "expert": "d050"},
                          {"type": "envelope"}, {"type": "cascade"}]}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(config))
    assert main(["bench", "run", "--config", str(tmp_path / "bench.yaml"), "--out",
                 str(tmp_path / "one"), "--no-progress"]) == 0
    done = torchrun("bench", "run", "--config", "bench.yaml", "--out", "two", "--no-progress",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("d025.tsv", "d050.tsv", "cascade.tsv"):
        pd.testing.assert_frame_equal(certificates(tmp_path / "one" / name),
                                      certificates(tmp_path / "two" / name))
    router = {"experts": ["d025", "d050"], "router": {"arch": "cnn_tiny"},
              "labels": {"n": 40, "alpha": 0.01, "subset": 2500, "batch_size": 2000},
              "train": {"epochs": 2, "batch_size": 64}, "data": {"dataset": "digits"}}
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(router))
    assert main(["router", "train", "--config", str(tmp_path / "router.yaml"), "--out",
                 str(tmp_path / "r1"), "--no-progress"]) == 0
    done = torchrun("router", "train", "--config", "router.yaml", "--out", "r2", "--no-progress",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    labels = [json.loads((tmp_path / r / "config.json").read_text())["rs_router"]["labels"]
              for r in ("r1", "r2")]
    assert labels[0] == labels[1]  # every count the same, however the inputs were sharded
    from safetensors.torch import load_file

    caches = [load_file(next((tmp_path / r / ".labels").glob("*.safetensors"))) for r in
              ("r1", "r2")]
    assert (caches[0]["counts"] == caches[1]["counts"]).all()
    assert main(["certify", "--router", str(tmp_path / "r2"), *DIGITS, "--out",
                 str(tmp_path / "routed.tsv")]) == 0
    assert len(pd.read_csv(tmp_path / "routed.tsv", sep="\t")) == 50


def test_the_documented_torchrun_lines_run_verbatim(tmp_path):
    """docs/scale.md: every command of its blocks marked `<!-- tested -->`, as written."""
    text = (ROOT / "docs" / "scale.md").read_text()
    blocks = re.findall(r"<!-- tested -->\s*```bash\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()
             if line.strip() and not line.startswith("#")]
    assert any(line.startswith("torchrun") for line in lines)
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "torchrun":
            argv[0] = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        elif argv[0] == "rsrouter":
            argv = [sys.executable, "-m", "rsrouter", *argv[1:]]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env=subprocess_env())
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
    assert (tmp_path / "fmnist-2procs.tsv").is_file()
