"""distill: train the student on the labels and on the teacher (soft targets computed once; hidden states
and attention maps per batch for the feature methods). The formula is in banglacompress/distill.py."""
from banglacompress.config import load_params, log_config, pass_through, stage_enabled, stage_main, write_json
from banglacompress.distill import train_student
from banglacompress.train import configure_torch


@stage_main
def main():
    params = load_params()
    if not stage_enabled(params, "distill"):
        return pass_through(params, "distill", "models/teacher", "models/student", "metrics/distill.json",
                            plots="plots/distill")
    log_config("distill", {"distill": params["distill"], "student": params["student"]})
    configure_torch(params["threads"])
    metrics = train_student(params["distill"], params["student"], prepared="data/prepared",
                            teacher_dir="models/teacher", out_dir="models/student", seed=params["seed"],
                            max_length=params["data"]["max_length"], live_dir="plots/distill")
    if metrics is not None:  # None: a non-zero data-parallel rank, which writes nothing
        write_json("metrics/distill.json", metrics)


if __name__ == "__main__":
    main()
