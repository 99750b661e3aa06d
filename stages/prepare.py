"""prepare: CSV -> cleaned, de-duplicated, stratified train/val/test splits + meta + data metrics
(or data.split_files: given splits, cleaned, de-duplicated, with cross-split twins removed)."""
from banglacompress.config import atomic_output, load_params, log_config, stage_main, write_json
from banglacompress.data import prepare_splits


@stage_main
def main():
    params = load_params()
    log_config("prepare", params["data"])
    with atomic_output("data/prepared") as out:
        metrics = prepare_splits(params["data"], params["seed"], out)
    write_json("metrics/data.json", metrics)
    print(f"[prepare] task {metrics['task']}, rows { {k: v['rows'] for k, v in metrics['splits'].items()} }, "
          f"{metrics['duplicate_rows_removed']} duplicates removed ({metrics['conflicting_duplicate_texts']} "
          f"conflicting), then {metrics['near_duplicate_rows_removed']} near-duplicates "
          f"({metrics['near_conflicting_duplicate_texts']} conflicting)")
    if "split_files" in metrics:
        print(f"[prepare] given splits {metrics['split_files']}: removed {metrics['cross_split_train_rows_removed']} "
              f"train rows with a near-duplicate in val ({metrics['cross_split_train_rows_in_val']}) or test "
              f"({metrics['cross_split_train_rows_in_test']}) and {metrics['cross_split_val_rows_removed']} val rows "
              "with one in test; test is kept whole")


if __name__ == "__main__":
    main()
