"""evaluate: every stage's saved artifact on the held-out test split, sizes, and interleaved latency
(timings in metrics/speed.* and plots/speed, apart from the reproducible quality and size)."""
from banglacompress.config import (atomic_output, load_params, log_config, pipeline_name, require, stage_enabled,
                                   stage_main, write_json)
from banglacompress.evaluate import (SPEED_COLUMNS, STAGE_DIRS, evaluate_stages, markdown_table, write_plots,
                                     write_speed_plots)
from banglacompress.train import configure_torch

MADE_BY = {"student": "distill", "pruned": "prune", "quantized": "quantize"}  # the teacher is always trained


def stages_run(params: dict) -> list[str]:
    """The models the pipeline variant really made, in order; a left-out stage's output is a copy of its
    input and is not reported twice. The last one is what export ships."""
    return [stage for stage in STAGE_DIRS if stage not in MADE_BY or stage_enabled(params, MADE_BY[stage])]


@stage_main
def main():
    params = load_params()
    cfg = params["evaluate"]
    log_config("evaluate", cfg)
    configure_torch(params["threads"])
    require(isinstance(cfg.get("references", True), bool),
            f"evaluate.references={cfg.get('references')!r} must be true or false")
    stages = stages_run(params)
    rows, speed, plots, header = evaluate_stages({s: STAGE_DIRS[s] for s in stages}, cfg, prepared="data/prepared",
                                                 max_length=params["data"]["max_length"], seed=params["seed"],
                                                 references=cfg.get("references", True))
    write_json("metrics/summary.json", {"task": header["task"], "test_rows": header["test_rows"],
                                        "pipeline": pipeline_name(params), "final": stages[-1], "stages": rows})
    write_json("metrics/speed.json", {"threads": header["threads"], "latency_threads": header["latency_threads"],
                                      "latency_samples": header["latency_samples"], "stages": speed})
    with atomic_output("plots/evaluate") as out:
        write_plots(out, plots, rows)
    with atomic_output("plots/speed") as out:
        write_speed_plots(out, rows, speed)
    with atomic_output("metrics/summary.md", is_dir=False) as tmp:
        tmp.write_text(markdown_table(rows), encoding="utf-8")
    with atomic_output("metrics/speed.md", is_dir=False) as tmp:
        tmp.write_text(markdown_table(speed, SPEED_COLUMNS), encoding="utf-8")
    print(markdown_table(rows))
    print(markdown_table(speed, SPEED_COLUMNS))


if __name__ == "__main__":
    main()
