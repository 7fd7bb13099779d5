"""Issue 21, item 3: what a cascade fallback could add to a routed certificate, at most.

    python benchmarks/fallback_bound.py FOLDER ROUTED [--cascade multiscale]

Reads a published bench folder (its TSVs and bench.json) and bounds "router, then the cascade
where the routed certificate abstains" from above: an input counts as certified at radius r if
the routed row is, or if the routed row abstains and the cascade's row certifies r. That ignores
what such a certificate would pay (the cascade's bounds need alpha of their own, and the fallback
region's edge must itself be certified), so the true curve lies below this one. ROUTED must be
a lazy set certificate (its rows say which experts it counted). Cost, also a lower bound: the
routed method's forwards plus, on the inputs that fall back, n estimation draws for each
cascade stage run there (largest sigma first, up to the stage that decided) whose expert the
routed row neither counted nor shares its forward pass with (the lazy set certificate already
drew every expert's n0 selection samples; a count serves both certificates, since the union
bound needs no independence). Prints
ACR, max regret against the experts' envelope and forwards per input relative to one expert
(n0 + n), beside the routed method and the cascade. If even this bound misses the issue's bar,
the lever cannot pay.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from rsrouter.results.curves import average_certified_radius, certified_accuracy
from rsrouter.results.tsv import read_tsv


def _tsv(folder: Path, name: str) -> pd.DataFrame:
    return read_tsv(folder / f"{name}.tsv").set_index("idx", drop=False)


def _sigmas(folder: Path, names: list[str]) -> dict[str, float]:
    return {name: float(json.loads((folder / f"{name}.method.json").read_text())["experts"][0]
                        ["sigma"]) for name in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("routed")
    ap.add_argument("--cascade", default="multiscale")
    args = ap.parse_args()
    cfg = json.loads((args.folder / "bench.json").read_text())["config"]
    radii, proto = cfg["radii"], cfg["protocol"]
    one = proto["n0"] + proto["n"]
    methods = {m["name"]: m for m in cfg["methods"]}
    experts = [m["name"] for m in cfg["methods"] if m["type"] == "expert"]
    envelope = np.max([certified_accuracy(_tsv(args.folder, e), radii).to_numpy()
                       for e in experts], axis=0)
    meta = json.loads((args.folder / f"{args.routed}.method.json").read_text())
    if meta.get("certificate") != "lazy-set":
        raise SystemExit(f"{args.routed}: a lazy set certificate is needed (its rows say which "
                         f"experts it counted); this one is {meta.get('certificate')!r}")
    shared = meta["router"].get("shares_forward_with")
    sigma_of = _sigmas(args.folder, experts)
    pool = list(methods[args.cascade]["experts"]) or experts  # the cascade's own experts
    stages = sorted(pool, key=lambda name: -sigma_of[name])
    routed, cascade = _tsv(args.folder, args.routed), _tsv(args.folder, args.cascade)
    cascade = cascade.loc[routed.index]
    falls = (routed["predict"] < 0).to_numpy()
    both = pd.concat([routed[~falls], cascade[falls]]).loc[routed.index]  # the bound's rows
    extra = np.zeros(len(routed))
    for i, (r, c) in enumerate(zip(routed.itertuples(), cascade.itertuples())):
        assert float(c.stage_sigma) == sigma_of[stages[int(c.stage)]], "cascade stage order"
        if falls[i]:
            paid = {float(s) for s, k in zip(str(r.expert_sigma).split(","),
                                             str(r.counted).split(",")) if k == "1"}
            if shared is not None:
                paid.add(sigma_of[shared])
            extra[i] = proto["n"] * sum(sigma_of[e] not in paid for e in stages[:int(c.stage) + 1])

    def regret(df: pd.DataFrame) -> float:
        return 100 * float((envelope - certified_accuracy(df, radii).to_numpy()).max())

    bound = both.assign(forwards=routed["forwards"].to_numpy() + extra)
    rows = [(args.routed, routed), (args.cascade, cascade),
            (f"{args.routed} + {args.cascade} fallback (upper bound)", bound)]
    print(f"{args.folder}: {len(routed)} inputs; {100 * falls.mean():.1f}% fall back")
    print("| method | ACR | max regret | forwards/input | x one expert |")
    print("| --- | --- | --- | --- | --- |")
    for name, df in rows:
        fw = df["forwards"].mean()
        print(f"| {name} | {average_certified_radius(df):.3f} | {regret(df):.1f} | {fw:,.0f} | "
              f"{fw / one:.2f} |")


if __name__ == "__main__":
    main()
