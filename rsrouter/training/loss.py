"""The training loss of routers and of classifiers trained on several noisy copies."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def router_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                copies: int, lam: float, eta: float) -> tuple[torch.Tensor, dict]:
    """Class-weighted soft cross-entropy over ``copies`` noisy copies, plus consistency.

    ``logits``: ``[copies * B, K]`` (copy-major); ``target``: ``[B, K]`` soft labels. The
    consistency term (Jeong & Shin 2020) is ``lam * mean_i KL(p_mean || p_i) + eta * H(p_mean)``.
    """
    log_p = F.log_softmax(logits, dim=1).view(copies, -1, logits.shape[1])
    w = target if weights is None else target * weights[None, :]
    ce = -(w[None] * log_p).sum(dim=2).mean()
    stats = {"ce": float(ce.detach())}
    loss = ce
    if lam > 0 or eta > 0:
        p = log_p.exp()
        p_mean = p.mean(dim=0)
        log_mean = p_mean.clamp_min(1e-12).log()
        kl = (p_mean[None] * (log_mean[None] - log_p)).sum(dim=2).mean()
        entropy = -(p_mean * log_mean).sum(dim=1).mean()
        loss = loss + lam * kl + eta * entropy
        stats.update(kl=float(kl.detach()), entropy=float(entropy.detach()))
    return loss, stats
