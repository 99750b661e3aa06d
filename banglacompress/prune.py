"""Pruning: one function per method behind a registry, masks kept on during healing, and an
honest sparsity count over the prunable weights only."""
from __future__ import annotations

import torch

from .config import require
from .models import encoder_linears

SCOPES = ("all", "attention", "ffn")


def prunable_layers(model, scope: str = "all") -> dict[str, torch.nn.Linear]:
    """Encoder Linear layers in scope. Embeddings, pooler and classifier are never included."""
    layers = encoder_linears(model)
    if scope == "attention":
        return {n: m for n, m in layers.items() if "attention" in n}
    if scope == "ffn":
        return {n: m for n, m in layers.items() if "attention" not in n}
    return layers


def apply_masks(model, masks: dict[str, torch.Tensor]) -> None:
    """Zero every pruned weight (call after each optimizer step so pruned weights stay zero)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            weight = modules[name].weight
            weight.mul_(mask.to(weight.device, weight.dtype))


def sparsity_report(model, names) -> dict:
    """Achieved sparsity per layer and over all the given layers' weights."""
    modules = dict(model.named_modules())
    per_layer, zeros, total = {}, 0, 0
    for name in names:
        w = modules[name].weight
        z = int((w == 0).sum())
        per_layer[name] = z / w.numel()
        zeros, total = zeros + z, total + w.numel()
    return {"sparsity": zeros / max(total, 1), "prunable_weights": total, "zero_weights": zeros,
            "per_layer": per_layer}


def _masks_from_scores(scores: dict[str, torch.Tensor], sparsity: float, granularity: str) -> dict:
    """Lowest-scoring weights are pruned: globally, per layer, or per output row. Exactly
    round(sparsity * n) weights per group, so achieved sparsity equals the target (no ties)."""
    masks = {}
    if granularity == "global":
        flat = torch.cat([s.flatten() for s in scores.values()])
        k = int(round(sparsity * flat.numel()))
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[torch.argsort(flat, stable=True)[:k]] = False
        offset = 0
        for name, s in scores.items():
            masks[name] = keep[offset: offset + s.numel()].view_as(s)
            offset += s.numel()
        return masks
    for name, s in scores.items():
        rows = s if granularity == "row" else s.flatten().unsqueeze(0)
        k = int(round(sparsity * rows.shape[1]))
        keep = torch.ones_like(rows, dtype=torch.bool)
        keep.scatter_(1, torch.argsort(rows, dim=1, stable=True)[:, :k], False)
        masks[name] = keep.view_as(s)
    return masks


def magnitude(model, sparsity: float, scope: str = "all", granularity: str = "global", **_) -> dict:
    """L1 magnitude pruning of the encoder's Linear weights."""
    scores = {n: m.weight.detach().abs().float() for n, m in prunable_layers(model, scope).items()}
    return _masks_from_scores(scores, sparsity, granularity)


PRUNE_METHODS = {"magnitude": magnitude}
GRANULARITIES = ("global", "layer", "row")


def prune(model, method: str, sparsity: float, scope: str = "all", **kwargs) -> dict:
    """Compute masks with `method`, apply them, and check the result (sanity check after every step)."""
    masks = PRUNE_METHODS[method](model, sparsity, scope=scope, **kwargs)
    apply_masks(model, masks)
    achieved = sparsity_report(model, masks)["sparsity"]
    require(abs(achieved - sparsity) <= 0.01, f"pruning reached sparsity {achieved:.4f}, not the target {sparsity}")
    return masks
