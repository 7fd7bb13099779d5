"""What Dual RS rounds did: each round's result, the round a config's ``select`` rule picks, the
paper's claims as one margin, and ``rounds.json`` / ``rounds.md`` / ``rounds.png``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..cards.router import read_router_card
from ..files import atomic_write_json, atomic_write_text
from ..results.figures import accuracy_figure, finish_figure, save_figure
from .config import DualRSConfig


@dataclass(frozen=True)
class RoundResult:
    """One round's folders and its validation summary rows (by method name)."""

    round: int
    classifier: Path
    estimator: Path
    bench: Path
    rows: dict


def dualrs_method(cfg: DualRSConfig) -> str:
    """The benchmark row of the Dual RS certificate the config judges."""
    return "dualrs-set" if cfg.certificate == "set" else "dualrs"


def best_round(cfg: DualRSConfig, results: list[RoundResult]) -> int:
    """The round the config's ``select`` rule picks on the validation results."""
    method = dualrs_method(cfg)

    def acr(r: RoundResult) -> float:
        return float(r.rows[method]["ACR"])

    if cfg.select == "acr":
        return max(results, key=lambda r: (acr(r), -r.round)).round
    if cfg.select == "claims":
        return max(results, key=lambda r: (claims_margin(r, method), acr(r), -r.round)).round
    return min(results, key=lambda r: (regret_vs_global(r, method), -acr(r), r.round)).round


CLAIM_GAIN = 2.0  # points above each global sigma somewhere on the grid
CLAIM_RADII = ("r=0.5", "r=0.75", "r=1")  # where the cascade must be beaten


def claims_margin(r: RoundResult, method: str = "dualrs") -> float:
    """The paper's two claims as one number, in points: the smallest of (a) for each global
    sigma, the largest gain of ``method`` over it on the grid minus 2 (the claim: >= 0), and
    (b) ``method`` minus the multiscale cascade at r = 0.5, 0.75 and 1 (the claim: > 0)."""
    me = r.rows[method]
    radii = [k for k in me if k.startswith("r=") and not k.endswith(("low", "high"))]
    dominance = [max(float(me[k]) - float(row[k]) for k in radii) - CLAIM_GAIN
                 for name, row in r.rows.items() if name.startswith("sigma-")]
    # select: claims requires all of CLAIM_RADII (config.validate); a display may lack some
    cascade = [float(me[k]) - float(r.rows["multiscale"][k]) for k in CLAIM_RADII if k in me]
    return min(dominance + cascade)  # unrounded: rounding could turn a loss into a tie


def regret_vs_global(r: RoundResult, method: str = "dualrs") -> float:
    """The largest gap of ``method`` below the best global sigma of the round, on the grid."""
    radii = [k for k in r.rows[method] if k.startswith("r=") and not k.endswith(("low", "high"))]
    best = {k: max(float(row[k]) for name, row in r.rows.items() if name.startswith("sigma-"))
            for k in radii}
    return round(max(0.0, *(best[k] - float(r.rows[method][k]) for k in radii)), 1)


def write_rounds(cfg: DualRSConfig, out: Path, results: list[RoundResult]) -> None:
    """rounds.json, rounds.md and rounds.png: each round's validation curves and what it did."""
    best = best_round(cfg, results)
    method = dualrs_method(cfg)
    radii = [k for k in results[0].rows["dualrs"] if k.startswith("r=")
             and not k.endswith(("low", "high"))]
    doc = {"name": cfg.name, "select": cfg.select, "certificate": cfg.certificate,
           "judged": method, "best_round": best, "split": "validation", "rounds": []}
    for r in results:
        card = read_router_card(r.estimator)
        doc["rounds"].append({
            "round": r.round, "classifier": str(r.classifier.relative_to(out)),
            "estimator": str(r.estimator.relative_to(out)),
            "routing": card.training.get("routing", {}),
            "label_best_share": card.labels.get("best_share"),
            "methods": {name: {key: row[key] for key in ("ACR", "ACR se", "max regret",
                                                         *radii) if key in row}
                        for name, row in r.rows.items()},
            "dualrs_regret_vs_global_sigmas": regret_vs_global(r, method),
            "claims_margin": claims_margin(r, method),
        })
    atomic_write_json(out / "rounds.json", doc)
    head = ["round", "method", *radii, "ACR", "regret vs global sigmas", "claims margin",
            "routing"]
    lines = [f"# {cfg.name}: Dual RS rounds on the validation split", "",
             f"Best round by `select: {cfg.select}` on `{method}`: **{best}**. Certified accuracy "
             "(%) per radius; regret = the largest gap below the round's best global sigma on the "
             "grid; claims margin = the worst of (largest gain over each global sigma - 2) and "
             "(gain over the multiscale cascade at r = 0.5, 0.75, 1): the paper's claims hold "
             "when the first are >= 0 and the second > 0.",
             "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for entry, r in zip(doc["rounds"], results):
        routing = ", ".join(f"{n.rsplit('sigma', 1)[-1]}: {100 * v:.0f}%"
                            for n, v in entry["routing"].items())
        for name in ("dualrs", "dualrs-set", "multiscale", *[f"sigma-{s:g}" for s in cfg.sigmas],
                     "oracle"):
            if name not in r.rows:
                continue
            row = r.rows[name]
            shown = "oracle (not a certificate)" if name == "oracle" else name
            lines.append("| " + " | ".join([str(r.round), shown, *[f"{float(row[k]):.1f}"
                                                                   for k in radii],
                                            f"{float(row['ACR']):.3f}" if "ACR" in row and
                                            row["ACR"] is not None else "-",
                                            f"{regret_vs_global(r, name):.1f}"
                                            if name != "oracle" else "-",
                                            f"{claims_margin(r, name):+.1f}"
                                            if name.startswith("dualrs") else "",
                                            routing if name == "dualrs" else ""]) + " |")
    atomic_write_text(out / "rounds.md", "\n".join(lines) + "\n")
    _plot(cfg, out / "rounds.png", results, radii, method)


def _plot(cfg: DualRSConfig, path: Path, results: list[RoundResult], radii: list[str],
          method: str = "dualrs") -> None:
    xs = [float(k[2:]) for k in radii]
    fig, ax = accuracy_figure((7, 4.5))
    for r in results:
        ax.plot(xs, [float(r.rows[method][k]) for k in radii], marker="o",
                label=f"Dual RS ({cfg.certificate} certificate), round {r.round}")
    for s in cfg.sigmas:  # the last round's classifier at each global sigma, for reference
        row = results[-1].rows[f"sigma-{s:g}"]
        ax.plot(xs, [float(row[k]) for k in radii], linestyle="--", alpha=0.6,
                label=f"round {results[-1].round} classifier, global sigma {s:g}")
    finish_figure(fig, ax, f"{cfg.name}: each round on the validation split",
                  xlabel="l2 radius (pixel units)", title_size=None)
    save_figure(fig, path)
