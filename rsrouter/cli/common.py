"""What every command group of ``rsrouter`` shares: argument types (a bad value is refused
before anything is loaded or written), common options, warnings, the device and the registry.

Only the standard library and rsrouter.errors are imported here; torch and the registry are
imported by the helpers that need them, when a command runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import RsrouterError

# ---- argument types ----------------------------------------------------------------------------


def int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def float_in(low: float, high: float | None, what: str):
    """An argparse type: a number in ``(low, high)`` (``high`` None: no upper bound)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (value > low and (high is None or value < high)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = what
    return parse


def sigma_list(text: str) -> list[float]:
    """A comma list of numbers >= 0 (sigmas, weights, normalization)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    """A comma list of integers >= 1 (sizes, resolutions)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def device_name(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


device_name.__name__ = "device"
COUNT = int_at_least(1)
PROBABILITY = float_in(0.0, 1.0, "in (0, 1)")
POSITIVE = float_in(0.0, None, "> 0")
NON_NEGATIVE = float_in(-1e-300, None, ">= 0")
# a router's certificates: rsrouter.cards.router.CERTIFICATES, spelled out so that building the
# parser imports no card code (tests/test_cli.py checks that they agree)
CERTIFICATES = ("pinned", "set", "lazy-set", "lazy-set+cascade")
SIGMA_HELP = "noise level in pixel units (inputs in [0, 1]; 64/255 = 0.25, not 64)"
REPLACE_HELP = ("let an added entry replace one it collides with (the same measurement with "
                "other results, or the same benchmark and method name); refused otherwise")


def add_trust_opt(p: argparse.ArgumentParser) -> None:
    """--trust-code."""
    p.add_argument("--trust-code", action="store_true",
                   help="allow cards whose architecture is 'module:factory' (imports and runs "
                        "that module); off by default")


def add_hub_opts(p: argparse.ArgumentParser) -> None:
    """--endpoint and --offline."""
    p.add_argument("--endpoint", help="Hub endpoint (default $HF_ENDPOINT or huggingface.co)")
    p.add_argument("--offline", action="store_true", default=None,
                   help="use the local caches only (as HF_HUB_OFFLINE=1)")


# ---- helpers of the commands ---------------------------------------------------------------------


def warn(message: str) -> None:
    """One line on stderr: ``rsrouter: warning: MESSAGE``."""
    print(f"rsrouter: warning: {message}", file=sys.stderr)


def check_sigma(sigma: float | None, flag: str = "--sigma") -> None:
    """sigma is in pixel units of inputs in [0, 1]: above 1 is almost surely the 0-255 scale."""
    if sigma is not None and sigma > 1:
        warn(f"{flag} {sigma:g} is above 1, but sigma is in pixel units of inputs in [0, 1]; "
             f"on the 0-255 scale that is {sigma / 255:.3g} (see docs/experts.md)")


def pick_device(name: str | None) -> str:
    """Join torchrun's process group if there is one and pick the device: the flag, else cuda
    when there is one (under torchrun, this rank's GPU). A CUDA device that is not there is an
    error here, not a traceback later. Ranks other than 0 print nothing to stdout."""
    import torch

    from ..distributed import setup

    name = None if name == "auto" else name
    if name is not None and name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise RsrouterError(f"--device {name}: this machine has {count} CUDA device(s) "
                                f"visible to torch; use --device cpu"
                                + (f" or cuda:0 ... cuda:{count - 1}" if count else ""))
    if name == "mps" and not torch.backends.mps.is_available():
        raise RsrouterError("--device mps: no Apple GPU is available; use --device cpu")
    try:
        dist, device = setup(name)
    except ValueError as e:
        raise RsrouterError(str(e)) from None
    if not dist.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - one report, from rank 0
    return device


def registry_of(args: argparse.Namespace):
    """The registry the command's options ask for (--endpoint, --offline, --trust-code)."""
    from ..registry.core import Registry

    return Registry(endpoint=getattr(args, "endpoint", None),
                    offline=getattr(args, "offline", None),
                    trust_code=getattr(args, "trust_code", False))


def protocol_of(args: argparse.Namespace):
    """The :class:`~rsrouter.protocol.Protocol` of the command's --n0, --n, --alpha, --seed and
    --batch-size."""
    from ..protocol import Protocol

    return Protocol(n0=args.n0, n=args.n, alpha=args.alpha, seed=getattr(args, "seed", 0),
                    batch_size=args.batch_size)


def catalog_of(args: argparse.Namespace):
    """The registered experts as listed (loads nothing: no torch)."""
    from ..registry.entries import Catalog

    return Catalog(endpoint=getattr(args, "endpoint", None),
                   offline=getattr(args, "offline", None))


def table(rows: list[dict]) -> str:
    """A plain text table (no pandas: `experts list` answers at once)."""
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
