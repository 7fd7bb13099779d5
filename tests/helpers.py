"""Small helpers shared by the tests: the repository's root, certificates without their timing,
edited configs and cards, the environment of a subprocess."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from rsrouter.results.tsv import read_tsv

ROOT = Path(__file__).resolve().parents[1]


def certificates(path: str | os.PathLike) -> pd.DataFrame:
    """A certificate TSV as read back, less its ``time`` column (the one that varies by run)."""
    return read_tsv(path).drop(columns="time")


def with_key(config: dict, key: str, value) -> dict:
    """A deep copy of ``config`` with the dotted ``key`` set to ``value`` (removed for KeyError),
    missing parents created."""
    config = copy.deepcopy(config)
    *parents, last = key.split(".")
    node = config
    for parent in parents:
        node = node.setdefault(parent, {})
    if value is KeyError:
        node.pop(last)
    else:
        node[last] = value
    return config


def edit_json(path: str | os.PathLike, change: Callable[[dict], object]) -> None:
    """Rewrite the JSON file ``path`` (a card's config.json) after ``change`` edits it in place."""
    path = Path(path)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def subprocess_env() -> dict[str, str]:
    """This environment (the tests' isolated config and caches) for a child Python, without the
    PYTHONPATH and PYTHONHOME of this one, writing no bytecode."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1"}
