"""train_teacher: fine-tune (or train from scratch) the teacher on the train split; select on val."""
import _path  # noqa: F401

from banglacompress.config import atomic_output, load_params, log_config, stage_main, write_json
from banglacompress.data import Encoded, class_weights, load_split
from banglacompress.models import build_model, count_params
from banglacompress.train import check_fit_options, fit, fit_options, label_loss, open_live, seed_everything, \
    tune_thresholds_and_save


@stage_main
def main():
    params = load_params()
    cfg, seed, max_length = params["teacher"], params["seed"], params["data"]["max_length"]
    log_config("train_teacher", cfg)
    check_fit_options("teacher", cfg)
    train_texts, y_train, meta = load_split("data/prepared", "train")
    val_texts, y_val, _ = load_split("data/prepared", "val")

    seed_everything(seed)
    model, tokenizer = build_model("teacher", cfg, meta, train_texts, max_length)
    train_set = Encoded(tokenizer, train_texts, y_train, max_length)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    weights = class_weights(y_train, meta["task"]) if cfg.get("class_weights", True) else None

    with open_live("plots/train_teacher") as live:
        result = fit(model, train_set, val_set, y_val, task=meta["task"], loss_fn=label_loss(meta["task"], weights),
                     seed=seed, live=live, desc="teacher", **fit_options(cfg))
    with atomic_output("models/teacher") as out:
        result.update(tune_thresholds_and_save(out, model, tokenizer, meta, val_set, y_val, max_length))
    write_json("metrics/train_teacher.json", {**{k: v for k, v in result.items() if k != "history"},
                                              **count_params(model)})


if __name__ == "__main__":
    main()
