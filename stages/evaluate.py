"""evaluate: every stage's saved artifact on the held-out test split, sizes, and interleaved latency."""
import _path  # noqa: F401
import numpy as np

from banglacompress.config import atomic_output, load_params, log_config, pipeline_name, stage_enabled, stage_main, \
    write_json
from banglacompress.data import load_split
from banglacompress.evaluate import (add_ratios, curve_plots, markdown_table, measure_speed, stage_row, score_split,
                                     write_plots)
from banglacompress.quantize import load_artifact
from banglacompress.scoring import agreement

STAGES = {"teacher": "models/teacher", "student": "models/student", "pruned": "models/pruned",
          "quantized": "models/quantized"}
MADE_BY = {"student": "distill", "pruned": "prune", "quantized": "quantize"}  # the teacher is always trained


def stages_run(params: dict) -> list[str]:
    """The models the pipeline variant really made, in order; a left-out stage's output is a copy of its
    input and is not reported twice. The last one is what export ships."""
    return [stage for stage in STAGES if stage not in MADE_BY or stage_enabled(params, MADE_BY[stage])]


@stage_main
def main():
    params = load_params()
    cfg, max_length, seed = params["evaluate"], params["data"]["max_length"], params["seed"]
    log_config("evaluate", cfg)
    stages = stages_run(params)
    texts, y_test, meta = load_split("data/prepared", "test")

    models, tokenizers, rows, predictions, plots = {}, {}, {}, {}, {}
    for stage in stages:
        path = STAGES[stage]
        model, tokenizer, info = load_artifact(path)
        metrics, predictions[stage], probs = score_split(model, tokenizer, info, texts, y_test, max_length)
        plots[stage] = curve_plots(meta["task"], meta["label_names"], y_test, probs, predictions[stage])
        rows[stage] = stage_row(stage, model, metrics, path)
        models[stage], tokenizers[stage] = model, tokenizer
        print(f"[evaluate] {stage}: test macro-F1 {metrics['macro_f1']:.4f}")

    rng = np.random.default_rng(seed)
    sample = [texts[i] for i in rng.choice(len(texts), min(cfg["latency_samples"], len(texts)), replace=False)]
    speed = measure_speed(models, tokenizers, sample, max_length, threads=cfg["threads"],
                          batch_size=cfg["batch_size"])
    for stage in rows:
        rows[stage].update(speed[stage])
    add_ratios(rows, predictions, meta["task"])
    if "quantized" in rows:
        # Against the FP32 model it was made from: models/pruned, or the stage before whose copy that is.
        fp32 = stages[stages.index("quantized") - 1]
        rows["quantized"]["agreement_with_fp32"] = agreement(meta["task"], predictions[fp32], predictions["quantized"])

    write_json("metrics/summary.json", {"task": meta["task"], "test_rows": len(texts), "threads": cfg["threads"],
                                        "latency_samples": len(sample), "pipeline": pipeline_name(params),
                                        "final": stages[-1], "stages": rows})
    with atomic_output("plots/evaluate") as out:
        write_plots(out, plots, rows)
    with atomic_output("metrics/summary.md", is_dir=False) as tmp:
        tmp.write_text(markdown_table(rows), encoding="utf-8")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
