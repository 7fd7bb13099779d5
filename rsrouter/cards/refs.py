"""References: how an expert is named (``hf://org/name[@rev]``, ``git+URL[@rev]``, a folder or a
registered name, each optionally ``#sigma=S``), told apart without touching any source.

Cards record these strings (a router's ``rs_router.experts``, a denoised card's
``rs_expert.denoiser.source``); :mod:`rsrouter.sources` parses and fetches what they name, the
source chosen by the scheme (:func:`is_remote_source`).
"""

from __future__ import annotations

import re

from ..errors import UnknownExpertError

HF_PREFIX = "hf://"
GIT_PREFIX = "git+"
HUB_REPO_ID = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+")  # org/name (the Hub checks more)
_SIGMA_SUFFIX = re.compile(r"#sigma=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


def is_remote_source(ref: str) -> bool:
    """Whether ``ref`` names a Hub repo (``hf://``) or a git remote (``git+``)."""
    return ref.startswith((HF_PREFIX, GIT_PREFIX))


def split_sigma(ref: str) -> tuple[str, float | None]:
    """``(reference, sigma)`` of ``REF#sigma=S`` (sigma None without the suffix): how one expert
    of weights that serve several sigmas is named (``fm-dualrs#sigma=0.5``)."""
    match = _SIGMA_SUFFIX.search(ref)
    if match is None:
        if "#sigma" in ref:
            raise UnknownExpertError(f"{ref!r}: write the sigma as REF#sigma=0.5 (a number in "
                                     "pixel units)")
        return ref, None
    return ref[:match.start()], float(match.group(1))


def sigma_ref(ref: str, sigma: float) -> str:
    """``ref`` naming its expert at ``sigma`` (exact: the shortest repr of the float)."""
    return f"{split_sigma(ref)[0]}#sigma={float(sigma)!r}"


def sigma_label(sigma: float) -> str:
    """``0.25`` -> ``"0.25"``, ``1.0`` -> ``"1.00"`` (as the zoo's names), other values exact."""
    return f"{sigma:.2f}" if round(sigma, 2) == sigma else repr(float(sigma))
