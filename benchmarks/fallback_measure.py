"""WIP (branch fallback-cert): the lazy set certificate + sound cascade fallback composed from a bench folder's counts.

    python benchmarks/fallback_measure.py FOLDER ROUTER_COUNT_PREFIX SHARE MARGIN
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "/work/wt/fallback-cert")
from rsrouter.bench.counts import read_counts
from rsrouter.certify.bounds import ABSTAIN
from rsrouter.certify.fallback import fallback_certificate
from rsrouter.certify.lazy_set import lazy_plan

folder = Path(sys.argv[1]); router_prefix = sys.argv[2]; share = float(sys.argv[3]); margin = float(sys.argv[4])
bench = json.loads((folder / "bench.json").read_text())
idx = bench["inputs"]; proto = bench["config"]["protocol"]; alpha = proto["alpha"]; radii = bench["config"]["radii"]
files = {p.name: p for p in (folder / "counts").glob("*.tsv")}
ex = ["fashion-mnist-sigma0.25", "fashion-mnist-sigma0.50", "fashion-mnist-sigma1.00"]
E = [read_counts(next(v for k, v in files.items() if k.startswith(e + "-")), idx) for e in ex]
R = read_counts(next(v for k, v in files.items() if k.startswith(router_prefix + "-")), idx)
labels = E[0]["label"].to_numpy(); sig = [float(e["sigma"].iloc[0]) for e in E]
n0, n = proto["n0"], proto["n"]; shared = 2
res, cost, paths = [], [], []
for pos in range(len(idx)):
    cA = [int(e["cA"].iloc[pos]) for e in E]
    sel_nA = [int(np.asarray(e["select"].iloc[pos])[c]) for e, c in zip(E, cA)]
    plan = lazy_plan(list(np.asarray(R["select"].iloc[pos])), cA, sel_nA, n0, float(R["sigma"].iloc[pos]), sig, margin)
    cert = fallback_certificate(int(R["cA"].iloc[pos]), list(R["counts"].iloc[pos]), float(R["sigma"].iloc[pos]),
        cA, [np.asarray(e["counts"].iloc[pos]) for e in E], sig, alpha, counted=plan, share=share)
    res.append((cert.prediction, cert.radius)); paths.append(cert.path)
    cost.append((n0 + n) + sum(n0 + (n if cert.evaluated[k] else 0) for k in range(3) if k != shared))
pred = np.array([r[0] for r in res]); rad = np.array([r[1] for r in res])
ok = (pred == labels) & (pred != ABSTAIN)
curve = [round(100 * float((ok & (rad >= r)).mean()), 1) for r in radii]
env = [max(100 * float(((e["cA"].to_numpy() == labels)).mean()) for e in E)]
print("paths", {p: paths.count(p) for p in set(paths)}, "ACR %.3f" % np.where(ok, rad, 0).mean(), "cost %.2fx" % (np.mean(cost) / (n0 + n)))
print("curve", curve)
