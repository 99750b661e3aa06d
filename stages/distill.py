"""distill: train the student on the labels and on the teacher (soft targets computed once; hidden states
and attention maps per batch for the feature methods). The formula is in banglacompress/distill.py."""
import _path  # noqa: F401
import torch

from banglacompress.config import atomic_output, load_params, log_config, pass_through, stage_enabled, stage_main, \
    write_json
from banglacompress.data import Encoded, class_weights, load_split
from banglacompress.distill import METHOD_FEATURES, build_kd, build_student, check_distill_params, check_teacher
from banglacompress.models import count_params, load_model_dir
from banglacompress.train import (check_fit_options, fit, fit_options, is_main_process, open_live, predict_logits,
                                  seed_everything, tune_thresholds_and_save)


@stage_main
def main():
    params = load_params()
    if not stage_enabled(params, "distill"):
        return pass_through(params, "distill", "models/teacher", "models/student", "metrics/distill.json",
                            plots="plots/distill")
    cfg, student_cfg, seed = params["distill"], params["student"], params["seed"]
    max_length = params["data"]["max_length"]
    log_config("distill", {"distill": cfg, "student": student_cfg})
    check_distill_params(cfg)
    check_fit_options("distill", cfg)

    train_texts, y_train, meta = load_split("data/prepared", "train")
    val_texts, y_val, _ = load_split("data/prepared", "val")
    # Attention maps need eager attention (sdpa returns none in transformers 5).
    eager = "attention" in METHOD_FEATURES[cfg["method"]]
    teacher, teacher_tok, teacher_info = load_model_dir("models/teacher",
                                                        attn_implementation="eager" if eager else None)
    teacher_val = predict_logits(teacher, Encoded(teacher_tok, val_texts, None, max_length), desc="teacher val")
    report = check_teacher(meta["task"], teacher_val, y_val, y_train, teacher_info["thresholds"],
                           cfg.get("min_teacher_margin", 0.02))
    # Soft targets once, with the teacher's own tokenizer; rows are matched to student batches by index.
    teacher_set = Encoded(teacher_tok, train_texts, None, max_length)
    teacher_logits = torch.from_numpy(predict_logits(teacher, teacher_set, desc="teacher train"))

    seed_everything(seed)
    student, tokenizer, start = build_student(student_cfg, meta, train_texts, max_length, teacher, teacher_tok)
    train_set = Encoded(tokenizer, train_texts, y_train, max_length)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    weights = class_weights(y_train, meta["task"]) if cfg.get("class_weights", True) else None
    loss_fn, extra, settings = build_kd(cfg, meta["task"], teacher_logits, teacher=teacher, teacher_set=teacher_set,
                                        student=student, student_set=train_set, class_weights=weights)
    del teacher  # the logit method is done with it; feature methods keep it inside loss_fn
    with open_live("plots/distill") as live:
        result = fit(student, train_set, val_set, y_val, task=meta["task"], loss_fn=loss_fn, seed=seed, live=live,
                     extra_modules=extra, desc="student", **fit_options(cfg))
    if not is_main_process():  # data-parallel run: rank 0 writes the outputs
        return
    with atomic_output("models/student") as out:
        result.update(tune_thresholds_and_save(out, student, tokenizer, meta, val_set, y_val, max_length))
    write_json("metrics/distill.json", {**report, **settings, **start,
                                        **{k: v for k, v in result.items() if k != "history"},
                                        **count_params(student)})


if __name__ == "__main__":
    main()
