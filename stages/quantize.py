"""quantize: FP32 pruned model -> quantized artifact, reloaded and checked against FP32 on val."""
import _path  # noqa: F401

from banglacompress.config import atomic_output, check_choice, load_params, log_config, require, stage_main, \
    write_json
from banglacompress.data import load_split
from banglacompress.evaluate import artifact_size, test_scores
from banglacompress.models import load_model_dir
from banglacompress.quantize import QUANT_METHODS, count_stored_params, load_artifact, save_artifact
from banglacompress.scoring import agreement


@stage_main
def main():
    params = load_params()
    cfg, max_length = params["quantize"], params["data"]["max_length"]
    log_config("quantize", cfg)
    check_choice("quantize.method", cfg["method"], QUANT_METHODS)
    val_texts, y_val, _ = load_split("data/prepared", "val")
    model, tokenizer, info = load_model_dir("models/pruned")
    fp32_scores, fp32_pred = test_scores(model, tokenizer, info, val_texts, y_val, max_length)

    quantized = QUANT_METHODS[cfg["method"]].quantize(model)
    with atomic_output("models/quantized") as out:
        save_artifact(out, cfg["method"], quantized, tokenizer, {**info, "quantization": cfg["method"]})
        # Sanity check: what was written reloads and predicts (val split; test is for evaluate only).
        reloaded, _, _ = load_artifact(out)
        q_scores, q_pred = test_scores(reloaded, tokenizer, info, val_texts, y_val, max_length)
        val_agreement = agreement(info["task"], fp32_pred, q_pred)
        require(val_agreement >= 0.9, f"the reloaded {cfg['method']} model agrees with FP32 on only "
                                      f"{val_agreement:.1%} of val rows; the artifact is broken")
        size = artifact_size(out)
    write_json("metrics/quantize.json", {"method": cfg["method"], "val_agreement_with_fp32": val_agreement,
                                         "val_macro_f1_fp32": fp32_scores["macro_f1"],
                                         "val_macro_f1": q_scores["macro_f1"], **size,
                                         **count_stored_params(reloaded)})


if __name__ == "__main__":
    main()
