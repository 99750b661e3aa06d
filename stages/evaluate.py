"""evaluate: every stage's saved artifact on the held-out test split, sizes, and interleaved latency."""
from banglacompress.config import (atomic_output, load_params, log_config, pipeline_name, stage_enabled, stage_main,
                                   write_json)
from banglacompress.evaluate import STAGE_DIRS, evaluate_stages, markdown_table, write_plots

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
    stages = stages_run(params)
    rows, plots, header = evaluate_stages({s: STAGE_DIRS[s] for s in stages}, cfg, prepared="data/prepared",
                                          max_length=params["data"]["max_length"], seed=params["seed"])
    write_json("metrics/summary.json", {**header, "pipeline": pipeline_name(params), "final": stages[-1],
                                        "stages": rows})
    with atomic_output("plots/evaluate") as out:
        write_plots(out, plots, rows)
    with atomic_output("metrics/summary.md", is_dir=False) as tmp:
        tmp.write_text(markdown_table(rows), encoding="utf-8")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
