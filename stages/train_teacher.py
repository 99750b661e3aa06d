"""train_teacher: fine-tune (or train from scratch) the teacher on the train split; select on val."""
import _path  # noqa: F401

from banglacompress.config import (atomic_output, check_choice, check_range, load_params, log_config, stage_main,
                                   write_json)
from banglacompress.data import Encoded, class_weights, load_split
from banglacompress.models import build_model, count_params
from banglacompress.train import (LOSSES, check_fit_options, cross_validate, fit, fit_options, freeze_base,
                                  is_main_process, label_loss, open_live, seed_everything, tune_thresholds_and_save)


@stage_main
def main():
    params = load_params()
    cfg, seed, max_length = params["teacher"], params["seed"], params["data"]["max_length"]
    log_config("train_teacher", cfg)
    check_fit_options("teacher", cfg)
    check_choice("teacher.loss", cfg.get("loss", "auto"), LOSSES)
    check_range("teacher.cv_folds", cfg.get("cv_folds", 0), 0, 20)
    train_texts, y_train, meta = load_split("data/prepared", "train")
    val_texts, y_val, _ = load_split("data/prepared", "val")
    task = meta["task"]

    def build(texts):
        seed_everything(seed)
        model, tokenizer = build_model("teacher", cfg, meta, texts, max_length)
        if cfg.get("freeze_base", False):
            freeze_base(model)
        return model, tokenizer

    def make_loss(y):
        weights = class_weights(y, task) if cfg.get("class_weights", True) else None
        return label_loss(task, weights, cfg.get("loss", "auto"), cfg.get("focal_gamma", 2.0))

    report = {}
    if cfg.get("cv_folds", 0) >= 2:
        report = cross_validate(build, train_texts, y_train, task=task, folds=cfg["cv_folds"], seed=seed,
                                max_length=max_length, make_loss=make_loss, **fit_options(cfg))
        print(f"[train_teacher] {cfg['cv_folds']}-fold CV macro-F1 {report['cv_macro_f1_mean']:.4f} "
              f"± {report['cv_macro_f1_std']:.4f}")

    model, tokenizer = build(train_texts)
    train_set = Encoded(tokenizer, train_texts, y_train, max_length)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    with open_live("plots/train_teacher") as live:
        result = fit(model, train_set, val_set, y_val, task=task, loss_fn=make_loss(y_train), seed=seed, live=live,
                     desc="teacher", **fit_options(cfg))
    if not is_main_process():  # data-parallel run: rank 0 writes the outputs
        return
    with atomic_output("models/teacher") as out:
        result.update(tune_thresholds_and_save(out, model, tokenizer, meta, val_set, y_val, max_length))
    write_json("metrics/train_teacher.json", {**report, **{k: v for k, v in result.items() if k != "history"},
                                              **count_params(model)})


if __name__ == "__main__":
    main()
