"""prepare: CSV -> cleaned, de-duplicated, stratified train/val/test splits + meta + data metrics."""
import _path  # noqa: F401

from banglacompress.config import (atomic_output, check_range, load_params, log_config, require, stage_main,
                                   write_json)
from banglacompress.data import TASKS, deduplicate, load_labelled, split, split_metrics


@stage_main
def main():
    params = load_params()
    cfg, seed = params["data"], params["seed"]
    log_config("prepare", cfg)
    require(cfg.get("task", "auto") in ("auto", *TASKS), f"data.task={cfg.get('task')!r} is not one of auto, {', '.join(TASKS)}")
    require(isinstance(cfg["label_columns"], list) and cfg["label_columns"],
            "data.label_columns must be a non-empty list of column names")
    check_range("data.val_size", cfg["val_size"], 0.01, 0.5)
    check_range("data.test_size", cfg["test_size"], 0.01, 0.5)
    check_range("data.fraction", cfg.get("fraction", 1.0), 0.001, 1.0)

    df, meta = load_labelled(cfg["path"], cfg["text_column"], cfg["label_columns"], cfg.get("task", "auto"),
                             cfg.get("drop_empty", False))
    df, dedup = deduplicate(df, meta["target_columns"], meta["task"])
    if cfg.get("fraction", 1.0) < 1.0:
        df = df.sample(frac=cfg["fraction"], random_state=seed).reset_index(drop=True)
    splits = split(df, meta, cfg["val_size"], cfg["test_size"], seed)

    meta.update(dedup, text_column=cfg["text_column"], label_columns=cfg["label_columns"],
                rows={k: len(v) for k, v in splits.items()},
                dedup_rule="exact text after NFC + whitespace clean-up; majority vote, ties to positive "
                           "(multi-class: lowest class id)")
    with atomic_output("data/prepared") as out:
        for name, part in splits.items():
            part.to_csv(out / f"{name}.csv", index=False, encoding="utf-8")
        write_json(out / "meta.json", meta)
    write_json("metrics/data.json", {"task": meta["task"], **dedup, "splits": split_metrics(splits, meta)})
    print(f"[prepare] task {meta['task']}, labels {meta['label_names']}, rows {meta['rows']}, "
          f"{dedup['duplicate_rows_removed']} duplicates removed ({dedup['conflicting_duplicate_texts']} conflicting)")


if __name__ == "__main__":
    main()
