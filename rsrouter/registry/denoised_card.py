"""Write a denoised expert family: a registered (or any) clean classifier and a denoiser, one card.

The classifier is loaded through the registry like any expert (resolve -> fetch -> check); the
denoiser is pinned file by file into the card's ``rs_expert.denoiser`` block; the result is
loaded back at every sigma before it is handed over.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..cards.denoiser import DENOISER_FILES, denoiser_block, read_denoiser
from ..cards.expert import ExpertCard, write_card
from ..cards.pins import WEIGHTS_FILE
from ..cards.refs import HF_PREFIX, split_sigma
from ..files import atomic_write_bytes
from ..urls import public_url
from .core import Registry


def make_denoised_card(classifier: str, denoiser: str, sigmas, out: str | os.PathLike, *,
                       registry: Registry | None = None, name: str = "") -> Path:
    """Write a denoised expert family to ``out``: the clean classifier ``classifier`` (a
    registered name, folder, ``hf://`` or ``git+`` source, read and verified like any expert:
    its card gives the architecture and normalization, its weights become ``out``'s) in front
    of ``denoiser`` (``hf://org/name[@rev]``, resolved to a commit sha, or a local folder, copied
    to ``out/denoiser``), one expert at each of ``sigmas``. Every denoiser file is hashed into the
    card. The result is loaded at every sigma before returning (each needs a timestep).

    Raises:
        CardError, IntegrityError, HubError, UnknownExpertError: from reading the parts;
        ValueError: a sigma the denoiser's schedule cannot serve.
    """
    registry = registry or Registry()
    out = Path(out)
    resolved = registry.resolve(split_sigma(classifier)[0])
    verified = registry.check(resolved, registry.fetch(resolved))
    files, base = verified.files, verified.card
    if denoiser.startswith(HF_PREFIX):
        hub = registry.sources.for_ref(denoiser)
        pinned = hub.resolve(denoiser)
        block = denoiser_block(pinned.source, pinned.revision,
                               read_denoiser(hub.fetch(pinned, DENOISER_FILES)))
    else:
        target = out / "denoiser"
        for file in DENOISER_FILES:
            (target / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(denoiser) / file, target / file)
        block = denoiser_block("denoiser", None, read_denoiser(target))
    card = ExpertCard(architecture=base.architecture, num_classes=base.num_classes,
                      input_size=base.input_size, mean=base.mean, std=base.std, sigma=None,
                      sigmas=tuple(sorted(float(s) for s in sigmas)), dataset=base.dataset,
                      label_names=list(base.label_names), arch_source=base.arch_source,
                      weights_sha256=files.weights_sha256, kind="denoised", denoiser=block,
                      resize=base.resize, name=name or out.name,
                      training={"method": "denoised smoothing (Carlini et al. 2023): one-step "
                                          "denoising, then the clean classifier",
                                "classifier": {"source": public_url(resolved.uri),
                                               "weights_sha256": files.weights_sha256,
                                               "card": base.name},
                                "denoiser": {"source": block["source"],
                                             "revision": block["revision"]}})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / WEIGHTS_FILE, files.weights)
    write_card(out, card)
    check = Registry(registry.project_file, registry.user_file, endpoint=registry.endpoint,
                     cache_dir=registry.cache_dir, offline=registry.offline)
    for s in card.sigmas:
        check.load(str(out), sigma=s)
    return out
