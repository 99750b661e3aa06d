"""quantize: FP32 pruned model -> quantized artifact (quantize.method), reloaded with the documented
loader and checked on val (banglacompress/artifact.py: quantize_and_verify). Test is left to evaluate."""
from banglacompress.artifact import quantize_and_verify
from banglacompress.config import load_params, log_config, pass_through, stage_enabled, stage_main, write_json
from banglacompress.train import configure_torch


@stage_main
def main():
    params = load_params()
    if not stage_enabled(params, "quantize"):  # models/quantized stays FP32: load_artifact reads it as such
        return pass_through(params, "quantize", "models/pruned", "models/quantized", "metrics/quantize.json")
    cfg = params["quantize"]
    log_config("quantize", cfg)
    configure_torch(params["threads"])
    metrics = quantize_and_verify(cfg, prepared="data/prepared", source="models/pruned", out_dir="models/quantized",
                                  max_length=params["data"]["max_length"], seed=params.get("seed", 42))
    write_json("metrics/quantize.json", metrics)
    print(f"[quantize] {cfg['method']}: val macro-F1 {metrics['val_macro_f1']:.4f} (FP32 "
          f"{metrics['val_macro_f1_fp32']:.4f}), agreement with FP32 {metrics['val_agreement_with_fp32']:.4f}, "
          f"{metrics['size_bytes']:,} bytes")


if __name__ == "__main__":
    main()
