"""prune: prune the student (magnitude | wanda | gradual | structured), heal it by fine-tuning with the
masks kept on (optionally with the teacher's soft targets), save it, and measure what it really gained."""
import _path  # noqa: F401
import numpy as np
import torch

from banglacompress.config import atomic_output, load_params, log_config, pass_through, require, stage_enabled, \
    stage_main, write_json
from banglacompress.data import Encoded, class_weights, load_split, make_loader
from banglacompress.distill import logit_kd
from banglacompress.evaluate import artifact_size, measure_speed
from banglacompress.models import count_params, from_pretrained_pruned, load_model_dir
from banglacompress.prune import (NEEDS_CALIBRATION, calibration_batches, check_prune_params, heal, pruning_options,
                                  start_pruning)
from banglacompress.train import (check_fit_options, fit_options, is_main_process, label_loss, open_live, predict_logits,
                                  tune_thresholds_and_save)


@stage_main
def main():
    params = load_params()
    if not stage_enabled(params, "prune"):
        return pass_through(params, "prune", "models/student", "models/pruned", "metrics/prune.json",
                            plots="plots/prune")
    cfg, seed, max_length = params["prune"], params["seed"], params["data"]["max_length"]
    log_config("prune", cfg)
    check_prune_params(cfg)
    check_fit_options("prune", cfg, epochs_key="fine_tune_epochs")

    train_texts, y_train, meta = load_split("data/prepared", "train")
    val_texts, y_val, _ = load_split("data/prepared", "val")
    model, tokenizer, info = load_model_dir("models/student")
    train_set = Encoded(tokenizer, train_texts, y_train, max_length)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    calib = calibration_batches(tokenizer, train_texts, y_train, max_length, cfg.get("calib_samples", 512),
                                cfg["batch_size"], seed) if NEEDS_CALIBRATION.get(cfg["method"]) else None
    total_steps = cfg["fine_tune_epochs"] * len(make_loader(train_set, cfg["batch_size"], shuffle=True))
    pruner = start_pruning(model, cfg["method"], cfg["sparsity"],
                           **pruning_options(cfg, calib=calib, task=meta["task"], total_steps=total_steps))
    after_prune = pruner.report(model)["sparsity"]

    weights = class_weights(y_train, meta["task"]) if cfg.get("class_weights", True) else None
    loss_fn = label_loss(meta["task"], weights)
    if cfg.get("kd_alpha", 0.0) > 0:
        # Teacher logits once, with the teacher's own tokenizer; matched to batches by row index.
        teacher, teacher_tok, _ = load_model_dir("models/teacher")
        teacher_logits = torch.from_numpy(predict_logits(teacher, Encoded(teacher_tok, train_texts, None, max_length),
                                                         desc="teacher train"))
        del teacher
        loss_fn = logit_kd(meta["task"], teacher_logits, alpha=cfg["kd_alpha"],
                           temperature=cfg.get("kd_temperature", 4.0), class_weights=weights)
    with open_live("plots/prune") as live:
        result = heal(model, pruner, train_set, val_set, y_val, task=meta["task"], loss_fn=loss_fn, seed=seed,
                      live=live, desc="prune", **fit_options(cfg, epochs_key="fine_tune_epochs"))
    report = pruner.report(model)

    if not is_main_process():  # data-parallel run: rank 0 writes the outputs
        return
    with atomic_output("models/pruned") as out:
        result.update(tune_thresholds_and_save(out, model, tokenizer, meta, val_set, y_val, max_length,
                                               extra={"prune_method": cfg["method"]}))
        # Sanity check: what was written reloads (with its pruned shapes) and predicts the same.
        reloaded = from_pretrained_pruned(out)
        drift = float(np.abs(predict_logits(model, val_set) - predict_logits(reloaded, val_set)).max())
        require(drift < 1e-4,
                f"the saved pruned model predicts differently after reloading (max logit diff {drift:.2e})")
        size = artifact_size(out)

    # Latency as in evaluate: batch 1, interleaved with the unpruned student, same threads (val texts:
    # the test split is for the evaluate stage only).
    student, student_tok, _ = load_model_dir("models/student")
    rng = np.random.default_rng(seed)
    sample = [val_texts[i] for i in rng.choice(len(val_texts), min(cfg.get("latency_samples", 100), len(val_texts)),
                                               replace=False)]
    speed = measure_speed({"student": student, "pruned": reloaded}, {"student": student_tok, "pruned": tokenizer},
                          sample, max_length, threads=cfg.get("threads", 2), batch_size=cfg["batch_size"])
    structured = cfg["method"] == "structured"
    timing = {"latency_ms_p50": speed["pruned"]["latency_ms_p50"], "latency_ms_p95": speed["pruned"]["latency_ms_p95"],
              "student_latency_ms_p50": speed["student"]["latency_ms_p50"], "latency_threads": cfg.get("threads", 2),
              "latency_samples": len(sample),
              # Unstructured zeros run through the same dense kernels: no speedup is claimed for them.
              "speedup_vs_student": (speed["student"]["latency_ms_p50"] / speed["pruned"]["latency_ms_p50"]
                                     if structured else None)}
    if not structured:
        timing["speedup_note"] = "unstructured sparsity: dense kernels, no speedup claimed (size shows in gzip_bytes)"
    student_size = artifact_size("models/student")
    write_json("metrics/prune.json", {"method": cfg["method"], "sparsity_after_prune": after_prune, **report,
                                      **{k: v for k, v in result.items() if k != "history"}, **count_params(model),
                                      **size, "student_size_bytes": student_size["size_bytes"],
                                      "student_gzip_bytes": student_size["gzip_bytes"], **timing})


if __name__ == "__main__":
    main()
