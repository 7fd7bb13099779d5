"""Publishing an expert or a router folder, checked first as a load would check it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..cards.pins import CONFIG_FILE
from ..registry.expert import verify_folder
from ..sources.publish import push_expert
from .load import load_router


def is_router_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder``'s card is a router's (``rs_router``) rather than an expert's."""
    config = Path(folder) / CONFIG_FILE
    return config.is_file() and "rs_router" in json.loads(config.read_text())


def push_folder(folder: str | os.PathLike, repo: str | None, *, private: bool = False,
                git_remote: str | None = None, endpoint: str | None = None,
                trust_code=None) -> str:
    """Check ``folder`` (a router loads; an expert's card, hashes and strict load at each sigma
    it serves), then push it to the Hub repo ``repo`` or to ``git_remote``; returns the commit
    sha to pin.

    Raises:
        CardError, IntegrityError, UntrustedCodeError: the folder fails its checks (nothing
            is uploaded).
        HubError: the push fails.
    """
    if is_router_folder(folder):
        load_router(folder, trust_code=trust_code)
    else:
        verify_folder(folder, trust_code=trust_code)
    return push_expert(folder, repo, private=private, git_remote=git_remote, endpoint=endpoint)
