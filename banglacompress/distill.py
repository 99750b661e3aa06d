"""Knowledge distillation: teacher sanity check, cached teacher logits, and KD losses behind a registry."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import require
from .scoring import decide, macro_f1, probabilities
from .train import hard_loss


# --------------------------------------------------------------------------- teacher check
def majority_baseline_f1(task: str, y_train: np.ndarray, y_val: np.ndarray) -> float:
    """Macro-F1 on validation of always predicting the training majority (per label)."""
    if task == "multiclass":
        majority = np.bincount(y_train).argmax()
        return macro_f1(task, y_val, np.full(len(y_val), majority))
    majority = (y_train.mean(axis=0) >= 0.5).astype(int)
    return macro_f1(task, y_val, np.tile(majority, (len(y_val), 1)))


def check_teacher(task: str, val_logits: np.ndarray, y_val: np.ndarray, y_train: np.ndarray,
                  thresholds, margin: float) -> dict:
    """Stop before distilling from a teacher that is no better than guessing the majority class
    (the predecessor silently distilled from chance-level teachers)."""
    teacher_f1 = macro_f1(task, y_val, decide(task, probabilities(task, val_logits), thresholds))
    baseline = majority_baseline_f1(task, y_train, y_val)
    require(teacher_f1 >= baseline + margin,
            f"the teacher's validation macro-F1 {teacher_f1:.4f} is not above the majority-class baseline "
            f"{baseline:.4f} + distill.min_teacher_margin {margin}: retrain the teacher (more epochs, another lr) "
            "before distilling from it")
    return {"teacher_val_macro_f1": teacher_f1, "majority_val_macro_f1": baseline}


# --------------------------------------------------------------------------- soft losses
def soft_logit_loss(task: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T). Multi-class: softmax KL. Binary and multi-label: the
    Bernoulli KL of each sigmoid output (the sigmoid form), averaged over labels."""
    t = temperature
    s, te = student / t, teacher.to(student.dtype) / t
    if task == "multiclass":
        kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(te, dim=-1), log_target=True, reduction="batchmean")
    else:
        p = torch.sigmoid(te)
        kl = (p * (F.logsigmoid(te) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-te) - F.logsigmoid(-s))).mean()
    return kl * t * t


def mse_logit_loss(task: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.mse_loss(student, teacher.to(student.dtype))


SOFT_LOSSES = {"kl": soft_logit_loss, "mse": mse_logit_loss}


def logit_kd(task: str, teacher_logits: torch.Tensor, *, alpha: float, temperature: float,
             class_weights: torch.Tensor | None = None, soft_loss: str = "kl"):
    """loss = alpha * soft(student, teacher) + (1 - alpha) * hard(student, labels).

    `teacher_logits` holds the teacher's logits for every training row, computed once with the
    teacher's own tokenizer; rows are looked up by the batch's `index`."""
    soft = SOFT_LOSSES[soft_loss]

    def loss_fn(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        target = teacher_logits[batch["index"].cpu()].to(logits.device)
        loss = (1 - alpha) * hard_loss(task, logits, batch["labels"], class_weights) if alpha < 1 else 0.0
        return loss + alpha * soft(task, logits, target, temperature) if alpha > 0 else loss

    return loss_fn


KD_METHODS = {"logit": logit_kd}
