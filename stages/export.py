"""export: the pipeline's end product. models/quantized (in whatever format quantize.method chose)
-> models/final: the same files plus a model card (README.md) carrying the test metrics from
evaluate (metrics/summary.json), the data splits (metrics/data.json), intended use, limits and how
to load it. The copy is reloaded and run once before it replaces models/final."""
from pathlib import Path

from banglacompress.config import load_params, read_json, stage_main, write_json
from banglacompress.export import write_final


@stage_main
def main():
    params = load_params()
    summary = read_json("metrics/summary.json")
    data = read_json("metrics/data.json") if Path("metrics/data.json").exists() else None
    given = (data or {}).get("split_files")  # given splits: data.path is their directory, not the dataset
    result = write_final("models/quantized", "models/final", summary=summary, data=data,
                         dataset=", ".join(given.values()) if given else Path(params["data"]["path"]).name)
    # models/quantized is the last model the pipeline variant made (a left-out stage passes its input on).
    rows = summary.get("stages", {})
    final = rows.get(summary.get("final", "quantized"), {})
    # Compression of what ships: every file of models/final (the card and checksums included).
    ratios = {f"compression_vs_{ref}": rows[ref]["size_bytes"] / result["size_bytes"]
              for ref in ("teacher", "teacher_onnx_int8") if ref in rows}
    write_json("metrics/export.json", {**result, "test_macro_f1": final.get("macro_f1"), **ratios})
    print(f"[export] models/final: {result['method']}, {result['size_bytes']:,} bytes")


if __name__ == "__main__":
    main()
