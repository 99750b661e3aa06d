"""train_teacher: fine-tune the teacher (from models/pretrained when pretraining applies, else teacher.model:
scratch or a hub model) on the train split; select on val."""
from banglacompress.config import load_params, log_config, stage_main, write_json
from banglacompress.pretrain import teacher_start
from banglacompress.train import configure_torch, train_teacher


@stage_main
def main():
    params = load_params()
    teacher = teacher_start(params)
    log_config("train_teacher", teacher)
    configure_torch(params["threads"])
    metrics = train_teacher(teacher, prepared="data/prepared", out_dir="models/teacher",
                            seed=params["seed"], max_length=params["data"]["max_length"],
                            live_dir="plots/train_teacher")
    if metrics is not None:  # None: a non-zero data-parallel rank, which writes nothing
        write_json("metrics/train_teacher.json", metrics)


if __name__ == "__main__":
    main()
