"""prune: prune the student (prune.method), heal it by fine-tuning with the masks kept on (optionally with
the teacher's soft targets), save it, and measure what it really gained."""
from banglacompress.config import load_params, log_config, pass_through, stage_enabled, stage_main, write_json
from banglacompress.prune import prune_and_heal
from banglacompress.train import configure_torch


@stage_main
def main():
    params = load_params()
    if not stage_enabled(params, "prune"):
        return pass_through(params, "prune", "models/student", "models/pruned", "metrics/prune.json",
                            plots="plots/prune")
    log_config("prune", params["prune"])
    configure_torch(params["threads"])
    metrics = prune_and_heal(params["prune"], prepared="data/prepared", student_dir="models/student",
                             teacher_dir="models/teacher", out_dir="models/pruned", seed=params["seed"],
                             max_length=params["data"]["max_length"], live_dir="plots/prune")
    if metrics is not None:  # None: a non-zero data-parallel rank, which writes nothing
        write_json("metrics/prune.json", metrics)


if __name__ == "__main__":
    main()
