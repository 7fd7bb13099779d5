"""The header every card shares (expert, router, denoised expert): what network it names and
what inputs that network takes, read and checked by one validator, :func:`check_header`.

The header is the timm-compatible part of ``config.json``: ``architecture``, ``num_classes`` and
``pretrained_cfg`` (``input_size`` [C, H, W], one ``mean`` and one positive ``std`` per channel),
plus an optional resize (``rs_expert.resize``). Field readers here turn a wrong type into a
CardError naming the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import CardError

MAX_CLASSES = 1_000_000  # beyond: a card typo, and a head that size would need gigabytes
MAX_CHANNELS = 1024
MAX_SIDE = 8192  # pixels per image side (input_size, rs_expert.resize.size)
RESIZE_MODES = ("nearest", "bilinear", "bicubic")  # rs_expert.resize.mode (torch interpolate)
_MODULE_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def is_code_reference(arch: str) -> bool:
    """Whether ``arch`` is a ``module:factory`` string (resolving it imports and runs code)."""
    return ":" in arch


def check_architecture_name(arch: object) -> str | None:
    """What is wrong with ``arch`` as an architecture name, importing nothing (None if fine)."""
    if not isinstance(arch, str) or not arch.strip():
        return f"must be a non-empty string, got {arch!r}"
    if is_code_reference(arch) and not _MODULE_FACTORY.fullmatch(arch):
        return f"{arch!r} is not a 'module.path:factory' string"
    return None


@dataclass(frozen=True)
class ResizeSpec:
    """``rs_expert.resize``: the network's input side ``size`` (H, W), resampled from the
    dataset's with ``mode`` (``antialias``: PyTorch's antialiased kernels, which differ from the
    plain ones when upsampling too). Noise, sigma and radius stay in the dataset's pixels."""

    size: tuple[int, ...]
    mode: str = "bicubic"
    antialias: bool = False

    def to_config(self) -> dict[str, Any]:
        return {"size": list(self.size), "mode": self.mode, "antialias": self.antialias}


@dataclass(frozen=True)
class Header:
    """What a card says about its network: built as ``architecture`` with ``num_classes``
    outputs, on inputs of ``input_size`` normalized by ``mean``/``std`` (resampled to
    ``resize.size`` first when given)."""

    architecture: str
    num_classes: int
    input_size: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: ResizeSpec | None = None

    @property
    def model_input_size(self) -> tuple[int, ...]:
        """What the network sees: ``input_size``, or its channels at ``resize``."""
        return ((self.input_size[0], *self.resize.size) if self.resize
                else tuple(self.input_size))


def check_header(header: Header, where: str) -> None:
    """The one validator of every card's header: class count, input size, normalization,
    architecture name and resize, each within rsrouter's limits.

    Raises:
        CardError: naming the field and what is allowed.
    """
    if not 2 <= header.num_classes <= MAX_CLASSES:
        raise CardError(f"{where}: num_classes must be between 2 and {MAX_CLASSES:,}, got "
                        f"{header.num_classes:,} (set it to the outputs of the weights' "
                        "classifier head)")
    _check_inputs(header.input_size, header.mean, header.std, where)
    problem = check_architecture_name(header.architecture)
    if problem:
        raise CardError(f"{where}: architecture {problem}")
    if header.resize is not None:
        _check_resize(header.resize, where)


def _check_inputs(input_size, mean, std, where: str) -> None:
    """``input_size`` a [C, H, W] within rsrouter's limits, one finite mean and one positive
    std per channel."""
    if len(input_size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                       for v in input_size):
        raise CardError(f"{where}: pretrained_cfg.input_size must be [C, H, W] of positive "
                        f"integers, got {list(input_size)}")
    if input_size[0] > MAX_CHANNELS or max(input_size[1:]) > MAX_SIDE:
        raise CardError(f"{where}: pretrained_cfg.input_size {list(input_size)} is beyond "
                        f"rsrouter's limits ({MAX_CHANNELS} channels, {MAX_SIDE} pixels a "
                        "side); give the size of the network's inputs, [C, H, W]")
    if len(mean) != input_size[0] or len(std) != input_size[0]:
        raise CardError(f"{where}: pretrained_cfg.mean/std need one value per input channel "
                        f"({input_size[0]}), got {list(mean)} / {list(std)}")
    if not all(math.isfinite(v) and v > 0 for v in std):
        raise CardError(f"{where}: pretrained_cfg.std must be positive, got {list(std)}")
    if not all(math.isfinite(v) for v in mean):
        raise CardError(f"{where}: pretrained_cfg.mean must be finite, got {list(mean)}")


def _check_resize(spec: ResizeSpec, where: str) -> None:
    if len(spec.size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                      and 0 < v <= MAX_SIDE for v in spec.size):
        raise CardError(f"{where}: rs_expert.resize.size must be [H, W] of positive integers up "
                        f"to {MAX_SIDE}, got {list(spec.size)}")
    if spec.mode not in RESIZE_MODES:
        raise CardError(f"{where}: rs_expert.resize.mode must be one of "
                        f"{', '.join(RESIZE_MODES)}, got {spec.mode!r}")
    if not isinstance(spec.antialias, bool) or (spec.antialias and spec.mode == "nearest"):
        raise CardError(f"{where}: rs_expert.resize.antialias must be true or false (and false "
                        f"for mode nearest), got {spec.antialias!r}")


def read_inputs(config: dict, where: str) -> tuple[str, tuple, tuple, tuple]:
    """``(architecture, input_size, mean, std)`` of a config.json, types checked."""
    cfg = require(config, "pretrained_cfg", dict, where)
    return (require(config, "architecture", str, where),
            tuple(numbers(cfg, "input_size", where, "pretrained_cfg.", int)),
            tuple(numbers(cfg, "mean", where, "pretrained_cfg.")),
            tuple(numbers(cfg, "std", where, "pretrained_cfg.")))


def read_resize(rs: dict, where: str) -> ResizeSpec | None:
    """The card's ``rs_expert.resize`` block ({size: [H, W], mode, antialias}), if any."""
    block = rs.get("resize")
    if block is None:
        return None
    if not isinstance(block, dict) or not isinstance(block.get("size"), list):
        raise CardError(f"{where}: rs_expert.resize must be {{size: [H, W], mode: bicubic, "
                        f"antialias: false}}, got {block!r}")
    unknown = set(block) - {"size", "mode", "antialias"}
    if unknown:
        raise CardError(f"{where}: rs_expert.resize: unknown keys {sorted(unknown)}")
    if not block["size"]:
        raise CardError(f"{where}: rs_expert.resize.size must be [H, W] (leave resize out for "
                        "none), got []")
    return ResizeSpec(tuple(block["size"]), block.get("mode", "bicubic"),
                      block.get("antialias", False))


def require(d: dict, key: str, types, where: str, prefix: str = "") -> Any:
    """``d[key]`` of ``types``; CardError naming ``prefix + key`` when missing or wrong."""
    if key not in d or d[key] is None:
        raise CardError(f"{where}: missing field {prefix}{key}")
    value = d[key]
    if not isinstance(value, types) or isinstance(value, bool):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise CardError(f"{where}: field {prefix}{key} must be {names}, got {value!r}")
    return value


def optional(d: dict, key: str, types, default, where: str, prefix: str = "rs_expert."):
    """``d[key]`` as :func:`require` checks it, or ``default`` when absent or null."""
    if d.get(key) is None:
        return default
    return require(d, key, types, where, prefix)


def numbers(d: dict, key: str, where: str, prefix: str, kind=(int, float),
            default: list | None = None) -> list:
    """A list of numbers (``kind``) under ``key``; CardError naming the field otherwise."""
    value = default if d.get(key) is None and default is not None else require(
        d, key, list, where, prefix)
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool)
                                              for v in value):
        names = kind.__name__ if isinstance(kind, type) else "number"
        raise CardError(f"{where}: field {prefix}{key} must be a list of {names}s, got {value!r}")
    return value
