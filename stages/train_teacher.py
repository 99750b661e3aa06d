"""train_teacher: fine-tune (or train from scratch) the teacher on the train split; select on val."""
from banglacompress.config import load_params, log_config, stage_main, write_json
from banglacompress.train import configure_torch, train_teacher


@stage_main
def main():
    params = load_params()
    log_config("train_teacher", params["teacher"])
    configure_torch(params["threads"])
    metrics = train_teacher(params["teacher"], prepared="data/prepared", out_dir="models/teacher",
                            seed=params["seed"], max_length=params["data"]["max_length"],
                            live_dir="plots/train_teacher")
    if metrics is not None:  # None: a non-zero data-parallel rank, which writes nothing
        write_json("metrics/train_teacher.json", metrics)


if __name__ == "__main__":
    main()
