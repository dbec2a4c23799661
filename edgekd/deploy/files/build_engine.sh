#!/usr/bin/env bash
# Build this bundle's TensorRT engine ON THE DEVICE (plans only run on the TensorRT version and GPU
# that built it). Writes engines/model_<precision>.plan + .json sidecar next to this script.
#
#   ./build_engine.sh                 # Python builder (edgekd_runtime.tensorrt_build)
#   ./build_engine.sh --trtexec       # trtexec, then a sidecar written by the Python side
#   options: --batch MIN,OPT,MAX (default 1,1,8)  --workspace-mb N (default 1024)
#            --version-compatible     # the plan also loads on later TensorRT versions (8.6+)
#
# How the precision is built is decided by what the installed TensorRT's Python API offers, the
# same way for both builders: fp16 from the FP16 ONNX, strongly typed, where strongly typed networks
# exist (10.x: trtexec --stronglyTyped; 11.x: always, no precision flags), else (8.x) the FP32 ONNX
# with --fp16; int8 (the Q/DQ ONNX) strongly typed on 10.x/11.x, with --int8 on 8.x.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
USE_TRTEXEC=0; BATCH=1,1,8; WORKSPACE=1024; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --trtexec) USE_TRTEXEC=1 ;;
    --batch) BATCH=$2; shift ;;
    --workspace-mb) WORKSPACE=$2; shift ;;
    --version-compatible) EXTRA+=(--version-compatible) ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
read -r ONNX ONNX_FP16 PLAN PRECISION INPUT SHAPE < <("$PY" - <<'PYEOF'
import json
m = json.load(open("manifest.json"))["model"]
fp16 = m["file_fp16"] if "file_fp16" in m else "-"  # fp16 bundles only
print(m["file"], fp16, m["engine"], m["tensorrt_precision"], m["input"]["name"], "x".join(map(str, m["input"]["shape"])))
PYEOF
)
SOURCES=("$ONNX")
if [ "$ONNX_FP16" != "-" ]; then SOURCES+=(--fp16-onnx "$ONNX_FP16"); fi
mkdir -p engines
if [ "$USE_TRTEXEC" = 0 ]; then
  exec "$PY" -m edgekd_runtime.tensorrt_build "${SOURCES[@]}" --out "$PLAN" --precision "$PRECISION" --batch "$BATCH" \
    --workspace-mb "$WORKSPACE" --timing-cache-dir engines --preprocess preprocess.json --labels labels.json ${EXTRA[@]+"${EXTRA[@]}"}
fi
TRTEXEC=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}
# the ONNX to build and trtexec's precision flags, as the Python builder would decide them here
DECISION=$("$PY" -m edgekd_runtime.tensorrt_build "${SOURCES[@]}" --out "$PLAN" --precision "$PRECISION" \
  ${EXTRA[@]+"${EXTRA[@]}"} --trtexec-flags)
read -r SOURCE TRT_FLAGS <<< "$DECISION"
read -r -a FLAGS <<< "$TRT_FLAGS"
IFS=, read -r BMIN BOPT BMAX <<< "$BATCH"
"$TRTEXEC" --onnx="$SOURCE" --saveEngine="$PLAN" ${FLAGS[@]+"${FLAGS[@]}"} \
  --minShapes="$INPUT:${BMIN}x$SHAPE" --optShapes="$INPUT:${BOPT}x$SHAPE" --maxShapes="$INPUT:${BMAX}x$SHAPE" \
  --memPoolSize=workspace:"${WORKSPACE}M" --timingCacheFile=engines/timing.cache
exec "$PY" -m edgekd_runtime.tensorrt_build "${SOURCES[@]}" --out "$PLAN" --precision "$PRECISION" --batch "$BATCH" \
  --workspace-mb "$WORKSPACE" --preprocess preprocess.json --labels labels.json ${EXTRA[@]+"${EXTRA[@]}"} \
  --sidecar-only trtexec
