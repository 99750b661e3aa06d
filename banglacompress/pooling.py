"""How the classification head sees a comment: `cls` (the family's own head on the first token),
`mean` or `max` (the same head on the masked mean / max of the last hidden states, padding excluded).

Hugging Face sequence-classification heads only pool the first token, so `mean` and `max` are a
forward hook on the base model that puts the pooled vector where the head looks (position 0; for
BERT the pooler is re-run on it). The choice is saved as `pooling` in config.json and re-applied by
this package's loaders (models.load_model_dir / from_pretrained_pruned, quantize.load_artifact);
the ONNX export traces the hook, so the exported graph pools the same way. A plain
`AutoModelForSequenceClassification.from_pretrained` does not know the key and would pool `cls`.
"""
import functools

import torch

from .config import check_choice

POOLING_KEY = "pooling"


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, seq, dim) -> (batch, dim): mean over the positions the mask keeps (padding excluded)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask[:, :, None].to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_max(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, seq, dim) -> (batch, dim): element-wise max over the kept positions."""
    if attention_mask is None:
        return hidden.amax(dim=1)
    return hidden.masked_fill(attention_mask[:, :, None] == 0, torch.finfo(hidden.dtype).min).amax(dim=1)


# name -> reducer over the sequence (None: the head's own first-token pooling)
POOLINGS = {"cls": None, "mean": masked_mean, "max": masked_max}


def _pool_at_first_token(reduce, base, args, kwargs, output):
    mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
    hidden = output.last_hidden_state
    pooled = torch.cat([reduce(hidden, mask)[:, None, :], hidden[:, 1:, :]], dim=1)
    output.last_hidden_state = pooled  # ModelOutput keeps its tuple view (outputs[0]) in step
    pooler = getattr(base, "pooler", None)
    if pooler is not None and getattr(output, "pooler_output", None) is not None:
        output.pooler_output = pooler(pooled)
    return output


def apply_pooling(model):
    """(Re-)attach the pooling recorded in model.config (default cls). Idempotent. Returns the model."""
    name = getattr(model.config, POOLING_KEY, None) or "cls"
    check_choice(f"config {POOLING_KEY}", name, POOLINGS)
    old = getattr(model, "_pooling_hook", None)
    if old is not None:
        old.remove()
    reduce = POOLINGS[name]
    model._pooling_hook = None if reduce is None else model.base_model.register_forward_hook(
        functools.partial(_pool_at_first_token, reduce), with_kwargs=True)
    return model


def set_pooling(model, name: str, param: str = "pooling"):
    """Record `name` in the config (saved with the model) and attach it."""
    check_choice(param, name, POOLINGS)
    setattr(model.config, POOLING_KEY, name)
    return apply_pooling(model)


def pooling_of(model) -> str:
    return getattr(model.config, POOLING_KEY, None) or "cls"
