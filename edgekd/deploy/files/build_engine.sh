#!/usr/bin/env bash
# Build this bundle's TensorRT engine ON THE DEVICE (plans only run on the TensorRT version and GPU
# that built them). Writes engines/model_<precision>.plan + .json sidecar next to this script.
#
#   ./build_engine.sh                 # Python builder (edgekd_runtime.tensorrt_build)
#   ./build_engine.sh --trtexec       # trtexec, then a sidecar written by the Python side
#   options: --batch MIN,OPT,MAX (default 1,1,8)  --workspace-mb N (default 1024)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
USE_TRTEXEC=0; BATCH=1,1,8; WORKSPACE=1024
while [ $# -gt 0 ]; do
  case "$1" in
    --trtexec) USE_TRTEXEC=1 ;;
    --batch) BATCH=$2; shift ;;
    --workspace-mb) WORKSPACE=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
read -r ONNX PLAN PRECISION INPUT SHAPE < <("$PY" - <<'PYEOF'
import json
m = json.load(open("manifest.json"))["model"]
print(m["file"], m["engine"], m["tensorrt_precision"], m["input"]["name"], "x".join(map(str, m["input"]["shape"])))
PYEOF
)
mkdir -p engines
if [ "$USE_TRTEXEC" = 0 ]; then
  exec "$PY" -m edgekd_runtime.tensorrt_build "$ONNX" --out "$PLAN" --precision "$PRECISION" --batch "$BATCH" \
    --workspace-mb "$WORKSPACE" --timing-cache-dir engines --preprocess preprocess.json --labels labels.json
fi
TRTEXEC=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}
TRT_MAJOR=$("$PY" -c 'import tensorrt; print(tensorrt.__version__.split(".")[0])')
IFS=, read -r BMIN BOPT BMAX <<< "$BATCH"
FLAGS=()
case "$PRECISION" in
  fp16) FLAGS+=(--fp16) ;;
  int8_qdq) if [ "$TRT_MAJOR" -ge 10 ]; then FLAGS+=(--stronglyTyped); else FLAGS+=(--int8); fi ;;
  fp32) ;;
  *) echo "trtexec path supports fp32/fp16/int8_qdq, not $PRECISION" >&2; exit 2 ;;
esac
"$TRTEXEC" --onnx="$ONNX" --saveEngine="$PLAN" "${FLAGS[@]}" \
  --minShapes="$INPUT:${BMIN}x$SHAPE" --optShapes="$INPUT:${BOPT}x$SHAPE" --maxShapes="$INPUT:${BMAX}x$SHAPE" \
  --memPoolSize=workspace:"${WORKSPACE}M" --timingCacheFile=engines/timing.cache
exec "$PY" -m edgekd_runtime.tensorrt_build "$ONNX" --out "$PLAN" --precision "$PRECISION" --batch "$BATCH" \
  --workspace-mb "$WORKSPACE" --preprocess preprocess.json --labels labels.json --sidecar-only trtexec
