"""Pruning: one function per method behind a registry, masks kept on during healing, and an
honest sparsity count over the prunable weights only.

Every method returns a `Pruner`: the masks to keep on while healing (none for structured pruning,
whose weights are physically gone), `after_step` to run after every optimizer step, the sparsity the
model must have right now (`expected`), and `report` (achieved sparsity per layer and overall).

- magnitude:  |W|, compared globally, per layer or per output row.
- wanda:      |W_ij| * ||X_j||_2 (Sun et al. 2023), X_j the input feature j over calibration tokens
              (padding excluded), compared within each output row; blocks pruned in order, each one
              calibrated on the already-pruned blocks before it, as in the reference code.
- gradual:    magnitude masks recomputed every `frequency` steps while the sparsity follows a
              schedule (cubic: Zhu & Gupta 2017) from 0 to the target; masks applied after every step.
- structured: whole attention heads and FFN neurons removed by importance (first-order Taylor,
              Michel et al. 2019 / Molchanov et al. 2019, or weight norm); the matrices shrink, so
              this is the only method that can make the model faster in dense kernels.
"""
from __future__ import annotations

import contextlib
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import AUTO, atomic_output, by_task, check_choice, check_range, require, resolve_options
from .data import Encoded, class_weights, load_split, make_loader, sample_batches
from .distill import logit_kd
from .measure import artifact_size
from .models import (block_layout, block_shape, count_params, encoder_blocks, encoder_linears, from_pretrained_pruned,
                     load_model_dir, record_pruned_shapes, shrink_block)
from .train import (check_fit_options, fit, fit_options, hard_loss, is_main_process, label_loss, open_live,
                    predict_logits, tune_thresholds_and_save)

SCOPES = ("all", "attention", "ffn")
GRANULARITIES = ("global", "layer", "row")
SCHEDULES = ("cubic", "linear", "exponential")
IMPORTANCES = ("taylor", "weight")
KD_SOURCES = ("teacher", "student")  # prune.kd_from: whose logits healing distils from
# prune.kd_from and prune.kd_alpha: auto, by task. On multi-label data distill learns soft targets only
# (distill.alpha auto: 1.0) from the teacher blended with TF-IDF, and healing toward the teacher's own logits plus
# the labels pulls the pruned student away from that. Healing from the student with soft targets only, against
# the teacher at 0.7, paired over 3 seeds on an AMD EPYC with AVX-512: final val macro-F1 cyberbullying
# +0.0044 +- 0.0015, toxic +0.0075 +- 0.0046, higher on every seed (bench/compare_healstudent_kd1_on_alpha1_amd512.md;
# docs/experiments.md, "Healing from the student, soft targets only"); on cyberbullying on an Intel Xeon, seed noise
# (+0.0003 +- 0.0033 for the teacher at 0.7, bench/compare_healteacher_screens_cyberbully_intel.md). No loss
# measured anywhere, and healing needs no teacher pass. On binary and multi-class data, where distill keeps hard
# labels (alpha 0.7), the student at 1.0 is seed noise on an Intel Xeon (hate speech +0.0001 +- 0.0032, SentNoB
# -0.0060 +- 0.0103, bench/compare_healstudent_screens_binary_multiclass_intel.md): those keep the teacher at 0.7.
AUTO_HEALING = {"kd_from": {"multilabel": "student", "binary": "teacher", "multiclass": "teacher"},
                "kd_alpha": {"multilabel": 1.0, "binary": 0.7, "multiclass": 0.7}}
TOLERANCE = 0.01  # achieved sparsity must be within 1 percentage point of what the method promised


# --------------------------------------------------------------------------- which weights
def head_linears(model) -> dict[str, torch.nn.Linear]:
    """Linear layers outside the transformer blocks and the embeddings: pooler, pre-classifier, classifier."""
    inside = set(encoder_linears(model))
    return {n: m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n not in inside and "embeddings" not in n}


def embedding_tables(model) -> dict[str, torch.nn.Embedding]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding)}


def prunable_layers(model, scope: str = "all", include_head: bool = False,
                    include_embeddings: bool = False) -> dict[str, torch.nn.Module]:
    """Encoder Linear layers in scope. The pooler / classifier and the embeddings are left alone
    unless asked for (include_head / include_embeddings): they are small, and the head is what
    turns features into the decision."""
    layers = encoder_linears(model)
    if scope == "attention":
        layers = {n: m for n, m in layers.items() if "attention" in n}
    elif scope == "ffn":
        layers = {n: m for n, m in layers.items() if "attention" not in n}
    if include_head:
        layers.update(head_linears(model))
    if include_embeddings:
        layers.update(embedding_tables(model))
    return layers


# --------------------------------------------------------------------------- masks
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


def _magnitude_masks(layers: dict, sparsity: float, granularity: str) -> dict:
    scores = {n: m.weight.detach().abs().float() for n, m in layers.items()}
    return _masks_from_scores(scores, sparsity, granularity)


# --------------------------------------------------------------------------- what a method returns
class Pruner:
    """One-shot masks: kept on after every optimizer step while healing."""

    def __init__(self, names, masks: dict[str, torch.Tensor], target: float):
        self.names, self.masks, self.target = list(names), masks, target

    def after_step(self, model) -> None:
        apply_masks(model, self.masks)

    def expected(self) -> float:
        """The sparsity the model must have now."""
        return self.target

    def report(self, model) -> dict:
        return sparsity_report(model, self.names)

    def check(self, model, when: str) -> dict:
        """Sanity check after every step: the achieved sparsity is what was promised, and no masked
        weight has grown back (the predecessor's masks leaked during fine-tuning)."""
        modules = dict(model.named_modules())
        leaked = sum(int((modules[n].weight.detach()[~m.to(modules[n].weight.device)] != 0).sum())
                     for n, m in self.masks.items())
        require(leaked == 0, f"{when}: {leaked} pruned weights are non-zero again: the masks leaked")
        report = self.report(model)
        require(abs(report["sparsity"] - self.expected()) <= TOLERANCE,
                f"{when}: sparsity {report['sparsity']:.4f}, not the {self.expected():.4f} the method promised")
        return report


@dataclass
class PruneContext:
    """What a method may use besides the model and its options: labelled calibration batches (train rows,
    for methods whose spec says `calibrated`), the task, and the number of healing steps."""
    calib: list | None = None
    task: str | None = None
    total_steps: int | None = None


# --------------------------------------------------------------------------- magnitude
def magnitude(model, sparsity: float, scope: str, ctx: PruneContext, *, granularity: str = "global",
              include_head: bool = False, include_embeddings: bool = False) -> Pruner:
    """L1 magnitude pruning of the encoder's Linear weights."""
    layers = prunable_layers(model, scope, include_head, include_embeddings)
    masks = _magnitude_masks(layers, sparsity, granularity)
    apply_masks(model, masks)
    return Pruner(layers, masks, sparsity)


# --------------------------------------------------------------------------- wanda
@torch.no_grad()
def input_sq_norms(model, layers: dict[str, torch.nn.Linear], batches: list[dict]) -> dict[str, torch.Tensor]:
    """Sum over calibration tokens of x_j^2 for every input feature j of each Linear (forward
    pre-hooks); padding positions are left out, so the norm does not depend on how rows were padded."""
    sums = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in layers.items()}
    current = {}

    def hook(name):
        def fn(module, args):
            x = args[0]
            mask = current["mask"]
            if x.dim() == 3 and x.shape[:2] == mask.shape:
                x = x[mask]  # [tokens, in]: non-padding tokens only
            sums[name] += x.detach().reshape(-1, x.shape[-1]).double().pow(2).sum(0).cpu()
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for batch in batches:
            current["mask"] = batch["attention_mask"].to(device).bool()
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sums


def wanda_scores(weight: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 (weight is [out, in]; sq_norm[j] = sum of x_j^2 over calibration tokens)."""
    return weight.detach().abs().float() * sq_norm.sqrt().float().to(weight.device).unsqueeze(0)


_BLOCK = re.compile(r"\.(?:layer|layers)\.(\d+)\.")


def _block_of(name: str) -> float:
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else math.inf  # head layers come after every block


def wanda(model, sparsity: float, scope: str, ctx: PruneContext, *, include_head: bool = False) -> Pruner:
    """Wanda: per output row, prune the weights with the lowest |W_ij| * ||X_j||_2. (Embedding tables have
    no input activations to score, so wanda does not take include_embeddings.)"""
    calib = ctx.calib
    require(bool(calib), "wanda needs calibration batches (prune.calib_samples > 0)")
    layers = prunable_layers(model, scope, include_head)
    masks = {}
    for block in sorted({_block_of(n) for n in layers}):
        group = {n: m for n, m in layers.items() if _block_of(n) == block}
        norms = input_sq_norms(model, group, calib)
        scores = {n: wanda_scores(m.weight, norms[n]) for n, m in group.items()}
        block_masks = _masks_from_scores(scores, sparsity, "row")
        # Applied now, so the next block is calibrated on this block's pruned output.
        apply_masks(model, block_masks)
        masks.update(block_masks)
    return Pruner(layers, masks, sparsity)


# --------------------------------------------------------------------------- gradual
def schedule_sparsity(step: int, target: float, start: int, end: int, schedule: str = "cubic",
                      initial: float = 0.0) -> float:
    """Sparsity at optimizer step `step`: `initial` up to `start`, `target` from `end` on.
    cubic (Zhu & Gupta 2017): s_f + (s_i - s_f)(1 - p)^3, fast early while the weights are redundant;
    linear: even steps; exponential: s_i + (s_f - s_i)(1 - e^{-5p}) / (1 - e^{-5}), faster still early."""
    if step <= start:
        return initial
    if step >= end:
        return target
    p = (step - start) / (end - start)
    if schedule == "cubic":
        return target + (initial - target) * (1 - p) ** 3
    if schedule == "linear":
        return initial + (target - initial) * p
    if schedule == "exponential":
        return initial + (target - initial) * (1 - math.exp(-5 * p)) / (1 - math.exp(-5))
    raise ValueError(f"unknown schedule {schedule!r}")


class GradualPruner(Pruner):
    """Magnitude masks recomputed at every pruning step of the schedule; applied after every step."""

    def __init__(self, layers: dict, target: float, schedule: str, start: int, end: int, frequency: int,
                 granularity: str):
        super().__init__(layers, {}, target)
        self.layers, self.schedule, self.start, self.end = layers, schedule, start, end
        self.frequency, self.granularity = frequency, granularity
        self.step, self.current = 0, schedule_sparsity(0, target, start, end, schedule)

    def is_pruning_step(self, step: int) -> bool:
        return self.start <= step <= self.end and ((step - self.start) % self.frequency == 0 or step == self.end)

    def after_step(self, model) -> None:
        self.step += 1
        if self.is_pruning_step(self.step):
            self.current = schedule_sparsity(self.step, self.target, self.start, self.end, self.schedule)
            modules = dict(model.named_modules())  # layers are looked up again: fit may wrap the model
            self.masks = _magnitude_masks({n: modules[n] for n in self.layers}, self.current, self.granularity)
        apply_masks(model, self.masks)

    def expected(self) -> float:
        return self.current


def gradual(model, sparsity: float, scope: str, ctx: PruneContext, *, granularity: str = "global",
            schedule: str = "cubic", start_step: int = 0, end_step: int | None = None, frequency: int = 100,
            include_head: bool = False, include_embeddings: bool = False) -> GradualPruner:
    """Gradual magnitude pruning during fine-tuning; end_step None = the last fine-tuning step."""
    total_steps = ctx.total_steps
    end = end_step if end_step is not None else total_steps
    require(end is not None and end > 0, "gradual pruning needs fine-tuning steps (prune.fine_tune_epochs >= 1)")
    require(total_steps is None or end <= total_steps,
            f"prune.end_step={end} is after the last fine-tuning step ({total_steps}): "
            "the target would never be reached")
    require(0 <= start_step < end, f"prune.start_step={start_step} must be in [0, end_step={end})")
    require(frequency >= 1, f"prune.frequency={frequency} must be >= 1")
    layers = prunable_layers(model, scope, include_head, include_embeddings)
    return GradualPruner(layers, sparsity, schedule, start_step, end, frequency, granularity)


# --------------------------------------------------------------------------- structured
def _taylor_importance(model, calib: list[dict], task: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """|dL/d gate| per example, summed over calibration examples, for a gate of 1 on each head's
    output and each FFN neuron (Michel et al. 2019): how much the loss moves if the unit is removed,
    to first order. Gates are forward pre-hooks on the attention output and FFN output projections."""
    blocks = encoder_blocks(model)
    heads = [torch.zeros(block_shape(b)["heads"], dtype=torch.float64) for b in blocks]
    neurons = [torch.zeros(block_shape(b)["intermediate"], dtype=torch.float64) for b in blocks]
    gates: dict[tuple[int, str], torch.Tensor] = {}

    def head_gate(i, n_heads):
        def fn(module, args):
            x = args[0]
            g = torch.ones(x.shape[0], n_heads, device=x.device, requires_grad=True)
            gates[(i, "h")] = g
            return (x.view(*x.shape[:2], n_heads, -1) * g[:, None, :, None]).reshape(x.shape),
        return fn

    def neuron_gate(i):
        def fn(module, args):
            x = args[0]
            g = torch.ones(x.shape[0], x.shape[-1], device=x.device, requires_grad=True)
            gates[(i, "n")] = g
            return (x * g[:, None, :]),
        return fn

    handles = []
    for i, block in enumerate(blocks):
        parts = block_layout(block)
        handles.append(block.get_submodule(parts["o"]).register_forward_pre_hook(head_gate(i, len(heads[i]))))
        handles.append(block.get_submodule(parts["down"]).register_forward_pre_hook(neuron_gate(i)))
    was_training = model.training
    model.eval()  # no dropout: the scores measure the model as it will run
    device = next(model.parameters()).device
    try:
        for batch in calib:
            require("labels" in batch, "taylor importance needs labelled calibration batches")
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
            loss = hard_loss(task, logits, batch["labels"].to(device)) * len(batch["input_ids"])  # per-example grads
            keys = list(gates)
            grads = torch.autograd.grad(loss, [gates[k] for k in keys])
            for (i, kind), g in zip(keys, grads):
                (heads if kind == "h" else neurons)[i] += g.detach().abs().sum(0).double().cpu()
            gates.clear()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return list(zip(heads, neurons))


@torch.no_grad()
def _weight_importance(model, *_) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """L2 norm of all the weights a head (its q/k/v rows and output-projection columns) or an FFN
    neuron (its up row and down column) owns. Needs no data."""
    out = []
    for block in encoder_blocks(model):
        parts = block_layout(block)
        w = {k: block.get_submodule(parts[k]).weight.float() for k in ("q", "k", "v", "o", "up", "down")}
        n_heads = block_shape(block)["heads"]
        rows = sum(w[k].pow(2).sum(1) for k in ("q", "k", "v")) + w["o"].pow(2).sum(0)
        heads = rows.view(n_heads, -1).sum(1).sqrt()
        neurons = (w["up"].pow(2).sum(1) + w["down"].pow(2).sum(0)).sqrt()
        out.append((heads.double().cpu(), neurons.double().cpu()))
    return out


IMPORTANCE = {"taylor": _taylor_importance, "weight": _weight_importance}


def units_to_remove(n: int, fraction: float) -> int:
    """round(fraction * n) (half up), keeping at least one unit so every block still works."""
    return min(int(math.floor(fraction * n + 0.5)), n - 1)


class StructuredPruner(Pruner):
    """Heads and neurons are gone from the matrices: nothing to mask; sparsity is the share of the
    prunable weights removed (dense zeros remaining are not counted as removed)."""

    def __init__(self, layers_before: dict[str, int], requested: float, planned: float):
        super().__init__(layers_before, {}, planned)
        self.before, self.requested = layers_before, requested

    def after_step(self, model) -> None:
        pass

    def report(self, model) -> dict:
        modules = dict(model.named_modules())
        per_layer = {n: 1 - modules[n].weight.numel() / size for n, size in self.before.items()}
        total = sum(self.before.values())
        kept = sum(modules[n].weight.numel() for n in self.before)
        shapes = [block_shape(b) for b in encoder_blocks(model)]
        return {"sparsity": (total - kept) / total, "requested_sparsity": self.requested,
                "prunable_weights": total, "removed_weights": total - kept, "remaining_prunable_weights": kept,
                "per_layer": per_layer, "heads_kept": [s["heads"] for s in shapes],
                "intermediate_kept": [s["intermediate"] for s in shapes]}


def structured(model, sparsity: float, scope: str, ctx: PruneContext, *, head_sparsity: float | None = None,
               ffn_sparsity: float | None = None, importance: str = "taylor") -> StructuredPruner:
    """Remove the least important heads and FFN neurons of every block (the same share per block,
    so the blocks stay balanced) and shrink the matrices. The kept shapes go into the config
    (`pruned_shapes`) so the saved model reloads with them. (Heads and FFN neurons only: structured
    takes neither include_head nor include_embeddings.)"""
    calib, task = ctx.calib, ctx.task
    require(importance in IMPORTANCE,
            f"prune.importance={importance!r} is not supported; choose one of {list(IMPORTANCE)}")
    require(importance != "taylor" or (calib and task), "taylor importance needs labelled calibration batches")
    head_frac = 0.0 if scope == "ffn" else (sparsity if head_sparsity is None else head_sparsity)
    ffn_frac = 0.0 if scope == "attention" else (sparsity if ffn_sparsity is None else ffn_sparsity)
    layers = prunable_layers(model, scope)
    before = {n: m.weight.numel() for n, m in layers.items()}
    scores = IMPORTANCE[importance](model, calib, task)

    attention_names = {n for n in layers if "attention" in n}
    removed = 0.0
    for block, (head_scores, neuron_scores) in zip(encoder_blocks(model), scores):
        shape = block_shape(block)
        drop_h, drop_n = units_to_remove(shape["heads"], head_frac), units_to_remove(shape["intermediate"], ffn_frac)
        # Stable sort: among equal scores the lower index is removed first, so results are deterministic.
        keep_h = torch.argsort(head_scores, stable=True)[drop_h:].tolist() if drop_h else None
        keep_n = torch.argsort(neuron_scores, stable=True)[drop_n:].tolist() if drop_n else None
        shrink_block(block, keep_h, keep_n)
        prefix = next(n for n, m in model.named_modules() if m is block)
        for name in layers:
            if name.startswith(prefix + "."):
                share = drop_h / shape["heads"] if name in attention_names else drop_n / shape["intermediate"]
                removed += share * before[name]
    record_pruned_shapes(model)
    requested = (sum(before[n] * (head_frac if n in attention_names else ffn_frac) for n in before)
                 / sum(before.values()))
    planned = removed / sum(before.values())
    if abs(planned - requested) > TOLERANCE:
        print(f"[prune] structured: whole heads/neurons only, so {planned:.4f} of the prunable weights are "
              f"removed, not the requested {requested:.4f} (heads kept per block: "
              f"{getattr(model.config, 'pruned_shapes')['heads']})", file=sys.stderr)
    return StructuredPruner(before, requested, planned)


# --------------------------------------------------------------------------- the methods (the registry)
@dataclass(frozen=True)
class PruneMethod:
    """One pruning method: its function, what it needs, what it changes, and the prune.* options it takes."""
    run: Callable            # (model, sparsity, scope, PruneContext, **options) -> Pruner
    options: dict = field(default_factory=dict)  # the options it takes, with their defaults
    calibrated: bool = False  # needs labelled calibration batches (prune.calib_samples train rows)
    structured: bool = False  # removes whole units, so the matrices shrink: the only kind a speedup is claimed for

    def resolve(self, name: str, given: dict) -> dict:
        return resolve_options("prune", name, self.options, given)


PRUNE_METHODS: dict[str, PruneMethod] = {
    "magnitude": PruneMethod(magnitude, {"granularity": "global", "include_head": False, "include_embeddings": False}),
    "wanda": PruneMethod(wanda, {"include_head": False}, calibrated=True),
    "gradual": PruneMethod(gradual, {"granularity": "global", "schedule": "cubic", "start_step": 0, "end_step": None,
                                     "frequency": 100, "include_head": False, "include_embeddings": False}),
    "structured": PruneMethod(structured, {"head_sparsity": None, "ffn_sparsity": None, "importance": "taylor"},
                              calibrated=True, structured=True),  # calibration: taylor importance
}
# The prune.* params that are method options (the rest belong to the stage), and how each is checked.
OPTION_KEYS = tuple(sorted({key for method in PRUNE_METHODS.values() for key in method.options}))
_FRACTION = (0.0, 1.0, False)
OPTION_CHECKS = {"granularity": GRANULARITIES, "schedule": SCHEDULES, "importance": IMPORTANCES,
                 "include_head": (True, False), "include_embeddings": (True, False),
                 "head_sparsity": _FRACTION, "ffn_sparsity": _FRACTION, "start_step": (0, 10**9, True),
                 "end_step": (1, 10**9, True), "frequency": (1, 10**9, True)}


def method_options(cfg: dict) -> dict:
    """The method options of a `prune:` params group (null: the method's default)."""
    return {key: cfg.get(key) for key in OPTION_KEYS}


def start_pruning(model, method: str, sparsity: float, scope: str = "all", ctx: PruneContext | None = None,
                  **options) -> Pruner:
    """Run `method` with its resolved options and check the result (sanity check after every step)."""
    check_choice("prune.method", method, PRUNE_METHODS)
    spec = PRUNE_METHODS[method]
    pruner = spec.run(model, sparsity, scope, ctx or PruneContext(), **spec.resolve(method, options))
    pruner.check(model, f"after {method} pruning")
    return pruner


def prune(model, method: str, sparsity: float, scope: str = "all", ctx: PruneContext | None = None,
          **options) -> dict:
    """One-shot pruning; returns the masks to keep on while fine-tuning (empty for structured)."""
    return start_pruning(model, method, sparsity, scope, ctx, **options).masks


def heal(model, pruner: Pruner, train_set: Encoded, val_set: Encoded, y_val, *, task: str, loss_fn: Callable,
         epochs: int, live=None, desc: str = "prune", **fit_kwargs) -> dict:
    """Fine-tune with `pruner.after_step` after every optimizer step, then check the sparsity.

    Gradual: the epochs up to end_step run without best-epoch selection (an epoch before the end of
    the schedule has not reached the target sparsity, and must not be restored); the epochs after it
    fine-tune with the final masks and select the best epoch as usual."""
    common = dict(task=task, loss_fn=loss_fn, after_step=pruner.after_step, live=live, desc=desc, **fit_kwargs)
    if not isinstance(pruner, GradualPruner) or epochs == 0:
        result = fit(model, train_set, val_set, y_val, epochs=epochs, **common)
    else:
        per_epoch = len(make_loader(train_set, fit_kwargs["batch_size"], shuffle=True))
        ramp = min(epochs, math.ceil(pruner.end / per_epoch))
        result = fit(model, train_set, val_set, y_val, epochs=ramp, select_best=False,
                     **{**common, "patience": 0})
        pruner.check(model, "at the end of the gradual schedule")
        if epochs > ramp:
            rest = fit(model, train_set, val_set, y_val, epochs=epochs - ramp, **common)
            result = {**rest, "best_epoch": rest["best_epoch"] + ramp if rest["best_epoch"] > 0 else -1,
                      "epochs_run": ramp + rest["epochs_run"], "history": result["history"] + rest["history"]}
    pruner.check(model, "after fine-tuning")
    return result


def check_prune_params(cfg: dict) -> None:
    """Reject bad `prune:` params before any work (one line each, no traceback)."""
    check_choice("prune.method", cfg["method"], PRUNE_METHODS)
    check_choice("prune.scope", cfg.get("scope", "all"), SCOPES)
    check_range("prune.sparsity", cfg["sparsity"], 0.0, 1.0, high_inclusive=False)
    check_range("prune.calib_samples", cfg.get("calib_samples", 512), 1, 10**7)
    check_range("prune.kd_alpha", cfg.get("kd_alpha", 0.0), 0.0, 1.0, allow_auto=True)
    check_range("prune.kd_temperature", cfg.get("kd_temperature", 4.0), 1e-3, 100.0)
    check_choice("prune.kd_from", cfg.get("kd_from", "teacher"), (AUTO, *KD_SOURCES))
    check_fit_options("prune", cfg, epochs_key="fine_tune_epochs")
    for key, value in method_options(cfg).items():
        if value is None:
            continue
        rule = OPTION_CHECKS[key]
        if isinstance(rule[0], str) or isinstance(rule[0], bool):
            require(value in rule and type(value) is type(rule[0]),
                    f"prune.{key}={value!r} is not supported; choose one of: {', '.join(map(str, rule))}")
        else:
            check_range(f"prune.{key}", value, rule[0], rule[1], high_inclusive=rule[2])
    PRUNE_METHODS[cfg["method"]].resolve(cfg["method"], method_options(cfg))
    require(cfg["method"] != "gradual" or cfg["fine_tune_epochs"] >= 1,
            "prune.method=gradual prunes during fine-tuning: prune.fine_tune_epochs must be >= 1")


# --------------------------------------------------------------------------- the prune stage
def kd_targets(cfg: dict, model, tokenizer, teacher_dir, train_texts: list[str], max_length: int) -> torch.Tensor:
    """The logits healing distils from, on the train rows. kd_from=teacher: the teacher's, with its own
    tokenizer. kd_from=student: those of `model`, the one the stage starts from, taken before pruning (the
    student; in pipeline prune_only, the teacher's copy), so healing pulls the pruned model back to the function
    distill gave it. That is not the teacher's: distill learns soft targets blended with TF-IDF
    (distill.tfidf_weight) on the transfer set."""
    source = cfg.get("kd_from", "teacher")
    if source == "teacher":
        model, tokenizer, _ = load_model_dir(teacher_dir)
    return torch.from_numpy(predict_logits(model, Encoded(tokenizer, train_texts, None, max_length),
                                           desc=f"{source} train"))


def prune_model(cfg: dict, model, tokenizer, *, train: tuple[list[str], np.ndarray], val: tuple[Encoded, np.ndarray],
                task: str, teacher_dir: str | Path, seed: int, max_length: int, live=None,
                desc: str = "prune") -> tuple[dict, dict]:
    """Prune `model` in place with prune.method and heal it by fine-tuning with the masks kept on (with soft targets
    from prune.kd_from when prune.kd_alpha > 0, labels only at 0; auto, either: AUTO_HEALING's for the task); the best
    epoch on val (`val`: its rows encoded by `tokenizer`, and their labels) is restored. Returns (what the method did:
    method, structured, sparsity_after_prune, the healing source and weight used, and the pruner's report; the
    healing result)."""
    spec = PRUNE_METHODS[cfg["method"]]
    # auto: the source and weight AUTO_HEALING gives the task, recorded as what they stand for
    cfg = {**cfg, **{key: by_task(cfg.get(key, default), AUTO_HEALING[key], task)
                     for key, default in (("kd_from", "teacher"), ("kd_alpha", 0.0))}}
    (train_texts, y_train), (val_set, y_val) = train, val
    train_set = Encoded(tokenizer, train_texts, y_train, max_length)
    calib = sample_batches(tokenizer, train_texts, y_train, cfg.get("calib_samples", 512), cfg["batch_size"],
                           max_length, seed) if spec.calibrated else None
    # Soft targets once, on the train rows, matched to batches by row index; before pruning touches the model.
    soft = (kd_targets(cfg, model, tokenizer, teacher_dir, train_texts, max_length)
            if cfg.get("kd_alpha", 0.0) > 0 else None)
    total_steps = cfg["fine_tune_epochs"] * len(make_loader(train_set, cfg["batch_size"], shuffle=True))
    pruner = start_pruning(model, cfg["method"], cfg["sparsity"], cfg.get("scope", "all"),
                           PruneContext(calib, task, total_steps), **method_options(cfg))
    after_prune = pruner.report(model)["sparsity"]

    weights = class_weights(y_train, task) if cfg.get("class_weights", True) else None
    loss_fn = label_loss(task, weights)
    if soft is not None:
        loss_fn = logit_kd(task, soft, alpha=cfg["kd_alpha"], temperature=cfg.get("kd_temperature", 4.0),
                           class_weights=weights)
    result = heal(model, pruner, train_set, val_set, y_val, task=task, loss_fn=loss_fn, seed=seed, live=live,
                  desc=desc, **fit_options(cfg, epochs_key="fine_tune_epochs"))
    return ({"method": cfg["method"], "structured": spec.structured, "sparsity_after_prune": after_prune,
             "kd_from": cfg["kd_from"] if soft is not None else None, "kd_alpha": cfg["kd_alpha"],
             **pruner.report(model)}, result)


def prune_and_heal(cfg: dict, *, prepared: str | Path, student_dir: str | Path, teacher_dir: str | Path,
                   out_dir: str | Path, seed: int, max_length: int, live_dir: str | Path | None = None) -> dict | None:
    """The prune stage: prune_model on the student, thresholds chosen on val, saved to out_dir (checked to reload
    with the same predictions), with what it removed and the bytes it saved. Timing is left to evaluate
    (metrics/speed.json), which times the pruned model interleaved with the student: a speedup is only expected
    from a `structured` method (unstructured zeros run through the same dense kernels). Returns the stage's
    metrics (None on a non-zero data-parallel rank)."""
    check_prune_params(cfg)
    train_texts, y_train, meta = load_split(prepared, "train")
    val_texts, y_val, _ = load_split(prepared, "val")
    model, tokenizer, _ = load_model_dir(student_dir)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    with open_live(live_dir) if live_dir else contextlib.nullcontext() as live:
        done, result = prune_model(cfg, model, tokenizer, train=(train_texts, y_train), val=(val_set, y_val),
                                   task=meta["task"], teacher_dir=teacher_dir, seed=seed, max_length=max_length,
                                   live=live)
    if not is_main_process():  # data-parallel run: rank 0 writes the outputs
        return None
    with atomic_output(out_dir) as out:
        result.update(tune_thresholds_and_save(out, model, tokenizer, meta, val_set, y_val, max_length,
                                               extra={"prune_method": cfg["method"]}))
        # Sanity check: what was written reloads (with its pruned shapes) and predicts the same.
        reloaded = from_pretrained_pruned(out)
        drift = float(np.abs(predict_logits(model, val_set) - predict_logits(reloaded, val_set)).max())
        require(drift < 1e-4,
                f"the saved pruned model predicts differently after reloading (max logit diff {drift:.2e})")
        size = artifact_size(out)
    student_size = artifact_size(student_dir)
    metrics = {**done, **{k: v for k, v in result.items() if k != "history"}, **count_params(model), **size,
               "student_size_bytes": student_size["size_bytes"], "student_gzip_bytes": student_size["gzip_bytes"]}
    return metrics
