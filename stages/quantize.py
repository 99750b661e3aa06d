"""quantize: FP32 pruned model -> quantized artifact (quantize.method), reloaded with the documented
loader and checked on val: the reloaded model must predict exactly what the in-memory one did, and
agree with FP32 on at least quantize.min_agreement of the rows. Test is left to evaluate."""
import _path  # noqa: F401
import numpy as np

from banglacompress.config import atomic_output, check_choice, check_range, load_params, log_config, pass_through, \
    require, stage_enabled, stage_main, write_json
from banglacompress.data import Encoded, load_split
from banglacompress.evaluate import artifact_size, test_scores
from banglacompress.quantize import QUANT_METHODS, calibration_batches, count_stored_params, load_artifact, \
    read_quant_record, save_artifact
from banglacompress.scoring import agreement
from banglacompress.train import predict_logits

OPTION_KEYS = ("per_channel", "embeddings", "embedding_bits", "threads")


def check_quantize_params(cfg: dict) -> None:
    check_choice("quantize.method", cfg["method"], QUANT_METHODS)
    check_range("quantize.calib_batches", cfg.get("calib_batches", 100), 1, 100000)
    check_range("quantize.batch_size", cfg.get("batch_size", 32), 1, 65536)
    check_range("quantize.min_agreement", cfg.get("min_agreement", 0.9), 0.0, 1.0)
    for key in ("per_channel", "embeddings"):
        require(cfg.get(key) in (None, True, False), f"quantize.{key}={cfg.get(key)!r} must be true, false or null")
    require(cfg.get("embedding_bits") in (None, 4, 8), f"quantize.embedding_bits={cfg.get('embedding_bits')!r} must be "
                                                       "4, 8 or null")
    if cfg.get("threads") is not None:
        check_range("quantize.threads", cfg["threads"], 1, 1024)


@stage_main
def main():
    params = load_params()
    if not stage_enabled(params, "quantize"):  # models/quantized stays FP32: load_artifact reads it as such
        return pass_through(params, "quantize", "models/pruned", "models/quantized", "metrics/quantize.json")
    cfg, max_length, seed = params["quantize"], params["data"]["max_length"], params.get("seed", 42)
    log_config("quantize", cfg)
    check_quantize_params(cfg)
    method = QUANT_METHODS[cfg["method"]]
    val_texts, y_val, _ = load_split("data/prepared", "val")
    model, tokenizer, info = load_artifact("models/pruned")
    fp32_scores, fp32_pred = test_scores(model, tokenizer, info, val_texts, y_val, max_length)

    calib = None
    if method.calibrated:
        train_texts, _, _ = load_split("data/prepared", "train")
        calib = calibration_batches(tokenizer, train_texts, cfg.get("calib_batches", 100), cfg.get("batch_size", 32),
                                    max_length, seed)
    quantized = method.quantize(model, calib, **{k: cfg.get(k) for k in OPTION_KEYS})
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    in_memory = predict_logits(quantized, val_set, desc="val")

    with atomic_output("models/quantized") as out:
        save_artifact(out, cfg["method"], quantized, tokenizer, {**info, "quantization": cfg["method"]})
        # What was written must be what was measured: reload with the documented loader.
        reloaded, _, _ = load_artifact(out)
        drift = float(np.abs(predict_logits(reloaded, val_set, desc="val") - in_memory).max())
        require(drift < 1e-4, f"the saved {cfg['method']} artifact predicts differently after reloading "
                              f"(max logit diff {drift:.2e}); the format loses information")
        q_scores, q_pred = test_scores(reloaded, tokenizer, info, val_texts, y_val, max_length)
        val_agreement = agreement(info["task"], fp32_pred, q_pred)
        require(val_agreement >= cfg.get("min_agreement", 0.9),
                f"the reloaded {cfg['method']} model agrees with FP32 on only {val_agreement:.1%} of val rows "
                f"(quantize.min_agreement={cfg.get('min_agreement', 0.9)}); the quantization is too lossy")
        size = artifact_size(out)
        record = read_quant_record(out) or {"method": "none", "fp32_modules": []}
    write_json("metrics/quantize.json", {
        "method": cfg["method"], "options": record.get("options", {}), "weights": method.weights,
        "val_agreement_with_fp32": val_agreement, "val_macro_f1_fp32": fp32_scores["macro_f1"],
        "val_macro_f1": q_scores["macro_f1"], "val_macro_f1_change": q_scores["macro_f1"] - fp32_scores["macro_f1"],
        "reload_max_logit_diff": drift, **size, **count_stored_params(reloaded),
        **({"int4_bits_per_weight": record["int4_bits_per_weight"]} if "int4_bits_per_weight" in record else {}),
        "fp32_module_count": len(record.get("fp32_modules", [])), "fp32_modules": record.get("fp32_modules", [])})
    print(f"[quantize] {cfg['method']}: val macro-F1 {q_scores['macro_f1']:.4f} (FP32 {fp32_scores['macro_f1']:.4f}), "
          f"agreement with FP32 {val_agreement:.4f}, {size['size_bytes']:,} bytes")


if __name__ == "__main__":
    main()
