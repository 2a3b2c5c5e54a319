"""What each loss term does during training, measured once per epoch on one fixed batch.

A user whose numbers fall below the paper's needs more than the loss curve. Each epoch
ends with one extra forward pass, on the first `batch_size` training images, and one
backward pass per loss term, and logs to train_log.csv:

- `grad_<part>_<term>`: the L2 norm of the gradient that each term of eq. 16 (L_distill,
  L_c1, gamma L_c2 as it enters eq. 11 that epoch, L_moe) sends into the prompts and into
  the decoder;
- `moe_load_e<t>`, `moe_importance_e<t>`: each expert's share of the top-K routing
  choices and of the router's total score (eqs. 13-15);
- `noise_ratio_tap<i>`: ||f_i^noise - f_i|| / ||f_i||, the training perturbation's size;
- `text_drift_tap<i>`: the cosine of g_n^i now and g_n^i before the first step (1: no
  drift);
- `normal_e_tap<i>`, `normal_ehat_tap<i>`: the share of the batch's e_i and decoded
  e^_i that eq. 1 classifies normal (p(normal) > 0.5).

The pass runs under a forked random state with its own noise generator, and takes
gradients with `torch.autograd.grad` (nothing accumulates into `.grad`): training goes
on exactly as without it.
"""

from __future__ import annotations

import torch

from cnc.model import losses
from cnc.model.backbone import FrozenCLIP, Taps
from cnc.model.decoder import perturb
from cnc.model.network import CNCNetwork

DIAGNOSTIC_SEED_OFFSET = 2  # the noise of the fixed batch: seed + 2 (training uses + 1)
PARTS = ("prompts", "decoder")
TERMS = ("distill", "c1", "c2", "moe")


@torch.no_grad()
def reference_text(model: CNCNetwork, encoder: FrozenCLIP) -> torch.Tensor | None:
    """g_n^i before training, (3, D): what the text drift is measured against."""
    return None if model.prompts is None else model.prompts(encoder)[:, 0].detach().cpu()


def _grad_norm(term: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    if not term.requires_grad:
        return 0.0
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    squares = [g.pow(2).sum() for g in grads if g is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def _routing(scores: torch.Tensor, top_k: int) -> dict[str, float]:
    flat = scores.detach().reshape(-1, scores.shape[-1])
    chosen = torch.zeros_like(flat).scatter(-1, flat.topk(top_k, dim=-1).indices, 1.0)
    load, importance = chosen.sum(0) / chosen.sum(), flat.sum(0) / flat.sum()
    out = {}
    for t in range(flat.shape[-1]):
        out[f"moe_load_e{t + 1}"] = float(load[t])
        out[f"moe_importance_e{t + 1}"] = float(importance[t])
    return out


def diagnose(
    model: CNCNetwork,
    encoder: FrozenCLIP,
    taps: Taps,
    epoch: int,
    seed: int,
    reference: torch.Tensor | None,
) -> dict[str, float]:
    """The diagnostics of one epoch on the fixed batch `taps` (see the module's text)."""
    c = model.config
    device = taps.patches.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        noise = torch.Generator(device=device).manual_seed(seed + DIAGNOSTIC_SEED_OFFSET)
        model.train()
        out = model(encoder, taps, epoch, noise)
        row: dict[str, float] = {}
        terms = {
            "distill": out.terms["distill"],
            "c1": out.terms.get("c1"),
            "c2": out.terms["constraint"] - out.terms["c1"] if "c1" in out.terms else None,
            "moe": out.terms["moe"],
        }
        parts = {"decoder": list(model.decoder.parameters())}
        if model.prompts is not None:
            parts["prompts"] = list(model.prompts.parameters())
        for part in PARTS:
            for name in TERMS:
                if part in parts and terms[name] is not None:
                    row[f"grad_{part}_{name}"] = _grad_norm(terms[name], parts[part])
        if out.scores is not None:
            row.update(_routing(out.scores, c.moe_top_k))
        tokens = torch.cat([taps.cls.unsqueeze(2), taps.patches], dim=2)
        shift = perturb(tokens, c.noise_std, noise) - tokens
        ratio = shift.flatten(2).norm(dim=-1).sum(0) / tokens.flatten(2).norm(dim=-1).sum(0)
        row.update({f"noise_ratio_tap{i + 1}": float(r) for i, r in enumerate(ratio)})
        if out.text is not None:
            normal = out.text[:, 0].detach()
            drift = (normal.cpu() * reference).sum(-1)  # unit vectors: the cosine
            row.update({f"text_drift_tap{i + 1}": float(d) for i, d in enumerate(drift)})
            for name, features in (("e", out.e), ("ehat", out.e_hat)):
                p_normal = losses.clip_log_probability(features.detach(), out.text, c.tau)
                share = (p_normal[..., 0].exp() > 0.5).float().mean(0)
                row.update({f"normal_{name}_tap{i + 1}": float(s) for i, s in enumerate(share)})
    return row


def diagnostic_batch(n_images: int, batch_size: int) -> torch.Tensor:
    """The fixed batch: the first `batch_size` training images, every epoch."""
    return torch.arange(min(batch_size, n_images))
