#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU and this project's requirements installed (a CUDA build
# of torch; bitsandbytes with its CUDA library). CI and the 2-core dev machine have no GPU, so these tests
# skip there; run this wherever a GPU is lent and commit what it prints (README, "GPU paths").
#   bash scripts/gpu_check.sh [LOG_DIR]      (default LOG_DIR: bench/logs/gpu_check_<UTC date>/, beside the first run)
# 1. what the machine is (GPU, driver, package versions);
# 2. the CUDA tests: fp16 and int4 (NF4) artifacts on cuda, mixed-precision autocast in fit, the stage
#    scripts under `accelerate launch --mixed_precision fp16|bf16`, bitwise-reproducible training on cuda;
# 3. the whole suite on this machine (where training tests now run on the GPU), with a time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-bench/logs/gpu_check_$(date -u +%F)}
SUITE_LIMIT=${SUITE_LIMIT:-240}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| cuda', torch.version.cuda, '| available', torch.cuda.is_available(), '|', torch.cuda.get_device_name(0))"
  python -m pip list 2>/dev/null | grep -i -E "^(accelerate|bitsandbytes|dvc|dvclive|onnx|onnxruntime|transformers|tokenizers|sentencepiece|scikit-learn|pandas|numpy|safetensors) "
  # A GPU image brings its own torch and friends; name every package that is not at requirements.txt's pin,
  # since a version can fail a test by itself (onnxruntime 1.30 fused no attention on the first H200 run).
  python - <<'PY'
import re
from importlib.metadata import PackageNotFoundError, version
for line in open("requirements.txt"):
    m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
    if not m:
        continue
    try:
        installed = version(m[1])
    except PackageNotFoundError:
        installed = "not installed"
    if installed.split("+")[0] != m[2]:
        print(f"not at its pin: {m[1]} {installed} (requirements.txt: {m[2]})")
PY
} 2>&1 | tee "$LOG/env.txt"

# -k cuda picks the CUDA tests by name; -rs lists any that skipped, so a skip cannot pass for a pass.
python -m pytest -q -rs -p no:cacheprovider --durations=10 -k cuda tests/test_training.py tests/test_quantize.py \
  2>&1 | tee "$LOG/cuda_tests.log"
cuda_rc=${PIPESTATUS[0]}

# SIGINT at the limit, not SIGKILL: pytest then still prints which tests failed and why (--tb=line) and
# writes the JUnit file, which a killed run does not (the first H200 run lost its failure list so).
timeout -s INT "$SUITE_LIMIT" python -m pytest -q -rfEs --tb=line -p no:cacheprovider -p no:benchmark \
  -n "${WORKERS:-8}" --dist loadfile --junitxml "$LOG/full_suite.xml" tests 2>&1 | tee "$LOG/full_suite.log"
echo "full suite exit code ${PIPESTATUS[0]} (124: stopped at ${SUITE_LIMIT} s)" | tee -a "$LOG/full_suite.log"
exit "$cuda_rc"
