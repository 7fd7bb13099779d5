"""The benchmark config (YAML): which data, which inputs, the statistical protocol, the methods.

Every error names the key and what is allowed. Example (benchmarks/configs/bench-digits.yaml)::

    name: digits-zoo
    data: {dataset: digits, split: test}
    inputs: {every: 1}                       # or {first: 200}, or {indices: [0, 7, 42]}
    protocol: {n0: 100, n: 10000, alpha: 0.001, seed: 0, batch_size: 2500}
    radii: [0, 0.25, 0.5, 0.75, 1.0]
    methods:
      - {type: expert, expert: digits-sigma0.25}
      - {type: expert, expert: digits-sigma0.50}
      - {type: router, router: ../../experts/routers/digits, name: routed}
      - {type: envelope}
      - {type: oracle}
      - {type: cascade, name: multiscale}
      - {type: aces, name: entropy-router, fit: {split: train, subset: 1000}}

Relative paths (expert and router folders) are relative to the config file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._moved import getattr_for as _getattr_for
from ..cards.router import CERTIFICATES, LAZY_KINDS
from ..certify.fallback import DEFAULT_SHARE
from ..certify.sequential import Sequential
from ..data import INFOS, SPLITS
from ..errors import ConfigError
from ..protocol import RADII, Protocol
from ..urls import public_url

CHOICE_SPLITS = ("none", "train", "validation", "test", "unknown")
_ALPHA_RULES = ("sound", "faithful")


@dataclass(frozen=True)
class MethodSchema:
    """The keys a method type takes besides ``type``, ``name``, ``chosen_on`` and ``note``, those
    it requires, and its default name (None: the name of its expert's folder)."""

    keys: frozenset[str]
    required: frozenset[str] = frozenset()
    name: str | None = None


# one per method type; each is run by the function registered for it in bench.harness.METHODS
METHOD_SCHEMAS = {
    "expert": MethodSchema(frozenset({"expert"}), frozenset({"expert"})),
    "router": MethodSchema(frozenset({"router", "alpha_split", "certificate", "margin",
                                      "fallback_share"}),
                           frozenset({"router"}), "routed"),
    "tree": MethodSchema(frozenset({"router", "children", "alpha_split"}),
                         frozenset({"router", "children"}), "tree"),
    "envelope": MethodSchema(frozenset({"experts"}), name="envelope"),
    "oracle": MethodSchema(frozenset({"experts"}), name="oracle"),
    "cascade": MethodSchema(frozenset({"experts", "threshold", "alpha_rule"}), name="cascade"),
    "aces": MethodSchema(frozenset({"experts", "alpha_split", "fit"}), name="entropy-router"),
}
METHOD_TYPES = tuple(METHOD_SCHEMAS)


@dataclass(frozen=True)
class Inputs:
    """Which inputs of the split: every ``every``-th from ``start``, the first ``first`` of those,
    or a list."""

    every: int = 1
    first: int | None = None
    indices: tuple[int, ...] | None = None
    start: int = 0

    def select(self, length: int) -> list[int]:
        if self.indices is not None:
            bad = [i for i in self.indices if not 0 <= i < length]
            if bad:
                raise ConfigError(f"inputs.indices: {bad[:5]} outside the split's 0..{length - 1}")
            return list(dict.fromkeys(self.indices))
        chosen = list(range(self.start, length, self.every))
        chosen = chosen[: self.first] if self.first is not None else chosen
        if not chosen:
            raise ConfigError(f"inputs: selects no input of a split of {length} (start "
                              f"{self.start}, every {self.every})")
        return chosen

    def describe(self) -> str:
        if self.indices is not None:
            return f"{len(self.indices)} listed inputs"
        every = "every input" if self.every == 1 else f"every {self.every}-th input"
        every += f" from index {self.start}" if self.start else ""
        return every + (f", the first {self.first}" if self.first is not None else "")


@dataclass(frozen=True)
class Fit:
    """Where a training-free router's thresholds are chosen: never the test inputs."""

    split: str = "train"
    subset: int = 2000
    n: int = 100
    alpha: float = 0.001
    copies: int = 32
    seed: int = 0


@dataclass(frozen=True)
class Method:
    """One method of the benchmark (see docs/benchmarks.md for what each certifies)."""

    type: str
    name: str
    expert: str | None = None  # expert
    router: str | None = None  # router; tree: the root router
    children: tuple[str, ...] = ()  # tree: child routers, each over some of the root's experts
    experts: tuple[str, ...] = ()  # cascade, aces: expert references; envelope, oracle: names
    # of expert methods of the config (default: every expert method)
    # router, tree, aces: share of alpha given to the router(s); None (router): the card's
    alpha_split: float | None = 0.5
    threshold: float = 0.5  # cascade: p0, the probability a stage must certify above
    alpha_rule: str = "sound"  # cascade
    # router: pinned (Dual RS), set (certify.set_certificate), lazy-set (certify.lazy_set) or
    # lazy-set+cascade (certify.fallback); None: the one the router's card names (else pinned)
    certificate: str | None = None
    margin: float | None = None  # lazy-set(+cascade): the plan's margin (None: the card's)
    fallback_share: float | None = None  # lazy-set+cascade: alpha's share (None: the card's)
    fit: Fit = field(default_factory=Fit)  # aces
    chosen_on: str | None = None  # where this method's choices were made (default: config's)
    note: str = ""


@dataclass
class BenchConfig:
    """A parsed benchmark config: the data and inputs, the protocol (with the radius grid) and
    the methods."""

    name: str
    dataset: str
    split: str = "test"
    root: str | None = None
    inputs: Inputs = field(default_factory=Inputs)
    protocol: Protocol = field(default_factory=Protocol)  # with the radius grid
    methods: tuple[Method, ...] = ()
    choices_made_on: str = "unknown"
    source: str = ""  # the file (paths in methods are relative to its folder)

    @property
    def base(self) -> Path:
        return Path(self.source).resolve().parent if self.source else Path.cwd()

    def to_dict(self) -> dict[str, Any]:
        """The config as recorded in a results folder (bench.json): sources without
        credentials, the grid as ``radii`` (and under ``protocol`` only when sequential looks
        decide it: the layout run keys of earlier results were computed on)."""
        d = asdict(self)
        d.pop("source")
        protocol = d.pop("protocol")
        grid = protocol.pop("radii")
        protocol["radii"] = grid if self.protocol.sequential is not None else []
        d = {**{k: d.pop(k) for k in ("name", "dataset", "split", "root", "inputs")},
             "protocol": protocol, "radii": grid, **d}
        for m in d["methods"]:
            for key in ("expert", "router"):
                m[key] = m[key] and public_url(m[key])
            for key in ("experts", "children"):
                m[key] = [public_url(ref) for ref in m[key]]
        return json.loads(json.dumps(d))

    def expert_methods(self) -> list[Method]:
        return [m for m in self.methods if m.type == "expert"]


def _keys(raw: Any, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key; allowed: "
                          f"{', '.join(sorted(allowed))}")
    missing = sorted(required - set(raw))
    if missing:
        raise ConfigError(f"{path}.{missing[0]}: missing key")
    return raw


def _int(raw: dict, key: str, path: str, default: int | None, low: int | None = 1) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        raise ConfigError(f"{path}.{key}: must be an integer" + (f" >= {low}" if low is not None
                                                                 else "") + f", got {value!r}")
    return value


def _prob(raw: dict, key: str, path: str, default: float) -> float:
    value = raw.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise ConfigError(f"{path}.{key}: must be a number in (0, 1), got {value!r}")
    return float(value)


def _str(raw: dict, key: str, path: str, default: str | None = None,
         choices: tuple[str, ...] | None = None) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}.{key}: must be a non-empty string, got {value!r}")
    if choices and value not in choices:
        raise ConfigError(f"{path}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _file_name(name: str, path: str, names: str) -> str:
    """``name``, checked: it becomes part of file names, so it may not leave the folder."""
    if any(c in name for c in "/\\:") or name.startswith(".") or not name.isprintable():
        raise ConfigError(f"{path}: {name!r} must not contain '/', '\\', ':' or control "
                          f"characters, nor start with '.' (it names {names})")
    return name


def _strings(raw: dict, key: str, path: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{path}.{key}: must be a list of expert references, got {value!r}")
    return tuple(value)


def _children(raw: dict, path: str) -> tuple[str, ...]:
    value = raw.get("children", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or (
            "children" in raw and not value):
        raise ConfigError(f"{path}.children: must be a non-empty list of router folders (each "
                          f"choosing among some of the root router's experts), got {value!r}")
    return tuple(value)


def _method(raw: Any, i: int) -> Method:
    path = f"methods[{i}]"
    if not isinstance(raw, dict) or "type" not in raw:
        raise ConfigError(f"{path}: a mapping with a type: one of {', '.join(METHOD_TYPES)}")
    kind = _str(raw, "type", path, choices=METHOD_TYPES)
    schema = METHOD_SCHEMAS[kind]
    raw = _keys(raw, path, schema.keys | {"type", "name", "chosen_on", "note"}, schema.required)
    fit_raw = _keys(raw.get("fit"), f"{path}.fit", {"split", "subset", "n", "alpha", "copies",
                                                    "seed"})
    fit = Fit(split=_str(fit_raw, "split", f"{path}.fit", "train", ("train", "validation")),
              subset=_int(fit_raw, "subset", f"{path}.fit", 2000),
              n=_int(fit_raw, "n", f"{path}.fit", 100),
              alpha=_prob(fit_raw, "alpha", f"{path}.fit", 0.001),
              copies=_int(fit_raw, "copies", f"{path}.fit", 32),
              seed=_int(fit_raw, "seed", f"{path}.fit", 0, low=None))
    default_name = schema.name or raw.get("expert")
    name = _file_name(_str(raw, "name", path, default_name and Path(str(default_name)).name),
                      f"{path}.name", "the method's files")
    threshold = raw.get("threshold", 0.5)
    if not isinstance(threshold, (int, float)) or not 0.5 <= threshold < 1:
        raise ConfigError(f"{path}.threshold: must be a number in [0.5, 1), got {threshold!r}")
    return Method(type=kind, name=name, expert=_str(raw, "expert", path),
                  router=_str(raw, "router", path), experts=_strings(raw, "experts", path),
                  children=_children(raw, path),
                  alpha_split=None if kind == "router" and "alpha_split" not in raw else
                  _prob(raw, "alpha_split", path, 0.5), threshold=float(threshold),
                  alpha_rule=_str(raw, "alpha_rule", path, "sound", _ALPHA_RULES), fit=fit,
                  chosen_on=_str(raw, "chosen_on", path, None, CHOICE_SPLITS),
                  certificate=_str(raw, "certificate", path, None, CERTIFICATES),
                  margin=_margin(raw, path), fallback_share=_fallback_share(raw, path),
                  note=_str(raw, "note", path) or "")


def _margin(raw: dict, path: str) -> float | None:
    margin = raw.get("margin")
    if margin is None:
        return None
    if raw.get("certificate", "lazy-set") not in LAZY_KINDS:
        raise ConfigError(f"{path}.margin: only the lazy-set certificates have a margin (this "
                          f"method's is {raw.get('certificate')})")
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) \
            or not math.isfinite(margin):
        raise ConfigError(f"{path}.margin: a number (radius units), got {margin!r}")
    return float(margin)


def _fallback_share(raw: dict, path: str) -> float | None:
    share = raw.get("fallback_share")
    if share is None:
        return None
    if raw.get("certificate", "lazy-set+cascade") != "lazy-set+cascade":
        raise ConfigError(f"{path}.fallback_share: only the lazy-set+cascade certificate has a "
                          f"fallback (this method's is {raw.get('certificate')})")
    return _prob(raw, "fallback_share", path, DEFAULT_SHARE)


def parse_inputs(raw: Any) -> Inputs:
    """The ``inputs`` block. Raises ConfigError naming the key."""
    raw = _keys(raw, "inputs", {"every", "first", "indices", "start"})
    if "indices" in raw and ({"every", "first", "start"} & set(raw)):
        raise ConfigError("inputs: give either indices, or every/first/start, not both")
    indices = raw.get("indices")
    if indices is not None and (not isinstance(indices, list) or not indices or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in indices)):
        raise ConfigError(f"inputs.indices: must be a non-empty list of integers, got {indices!r}")
    return Inputs(every=_int(raw, "every", "inputs", 1), first=_int(raw, "first", "inputs", None),
                  indices=tuple(indices) if indices is not None else None,
                  start=_int(raw, "start", "inputs", 0, low=0))


def parse_protocol(raw: Any, radii: Any) -> Protocol:
    """The ``protocol`` block and the ``radii`` grid (as written: a list). Raises ConfigError
    naming the key."""
    proto = _keys(raw, "protocol", {"n0", "n", "alpha", "seed", "batch_size", "sequential"})
    values = dict(n0=_int(proto, "n0", "protocol", 100), n=_int(proto, "n", "protocol", 10_000),
                  alpha=_prob(proto, "alpha", "protocol", 0.001),
                  seed=_int(proto, "seed", "protocol", 0, low=None),
                  batch_size=_int(proto, "batch_size", "protocol", 1000))
    sequential = None
    if proto.get("sequential") is not None:
        seq = _keys(proto["sequential"], "protocol.sequential", {"looks", "final_share"},
                    {"looks"})
        looks = seq["looks"]
        if not isinstance(looks, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                  for v in looks):
            raise ConfigError(f"protocol.sequential.looks: a list of sample sizes, got {looks!r}")
        sequential = Sequential(tuple(looks), float(seq.get("final_share", 0.5)))
        try:
            sequential.check(values["n"])
        except ValueError as e:
            raise ConfigError(f"protocol.sequential: {e}") from None
    if (not isinstance(radii, list) or not radii
            or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0
                       for r in radii) or sorted(radii) != radii):
        raise ConfigError(f"radii: must be a non-empty increasing list of numbers >= 0, got "
                          f"{radii!r}")
    return Protocol(**values, radii=tuple(float(r) for r in radii), sequential=sequential)


def parse_bench_config(raw: Any, source: str = "") -> BenchConfig:
    """Build and validate a :class:`BenchConfig`. Raises ConfigError naming the key."""
    raw = _keys(raw, "config", {"name", "data", "inputs", "protocol", "radii", "methods",
                                "choices_made_on"}, {"name", "data", "methods"})
    data = _keys(raw["data"], "data", {"dataset", "split", "root"}, {"dataset"})
    dataset = _str(data, "dataset", "data", choices=tuple(INFOS))
    inputs = parse_inputs(raw.get("inputs"))
    protocol = parse_protocol(raw.get("protocol"), raw.get("radii", list(RADII)))
    chosen = _str(raw, "choices_made_on", "config", "unknown", CHOICE_SPLITS)
    methods_raw = raw["methods"]
    if not isinstance(methods_raw, list) or not methods_raw:
        raise ConfigError(f"methods: must be a non-empty list, types {', '.join(METHOD_TYPES)}")
    methods = tuple(_method(m, i) for i, m in enumerate(methods_raw))
    names = [m.name for m in methods]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"methods: names must be unique; {duplicated} appear twice (set name:)")
    experts = [m for m in methods if m.type == "expert"]
    split = _str(data, "split", "data", "test", SPLITS)
    for i, m in enumerate(methods):
        pool = m.experts or tuple(e.expert for e in experts)
        if m.type in ("envelope", "oracle"):
            names = [e.name for e in experts]
            unknown = [e for e in m.experts if e not in names]
            if unknown or not names:
                raise ConfigError(f"methods[{i}].experts ({m.type}): name expert methods of this "
                                  f"config ({', '.join(names) or 'none'}), not {unknown}")
        if m.type in ("cascade", "aces") and len(pool) < 2:
            raise ConfigError(f"methods[{i}] ({m.type}): needs at least 2 experts (list experts:"
                              " or add expert methods)")
        if m.type == "aces" and split == m.fit.split:
            raise ConfigError(f"methods[{i}] (aces): fits its thresholds on data.split "
                              f"{split} itself; fit on another split (fit.split)")
    return BenchConfig(name=_file_name(_str(raw, "name", "config"), "name",
                                       "the leaderboard entries' files"), dataset=dataset,
                       split=split,
                       root=_str(data, "root", "data"), inputs=inputs, protocol=protocol,
                       methods=methods,
                       choices_made_on=chosen, source=source)


def load_bench_config(path: str | os.PathLike) -> BenchConfig:
    """Read a benchmark config. Raises ConfigError (file missing, bad YAML, bad keys/values)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark config {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    try:
        return parse_bench_config(raw, str(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


__getattr__ = _getattr_for(__name__)  # names of rsrouter 0.2 that moved on (rsrouter._moved)
