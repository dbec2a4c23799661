#!/usr/bin/env bash
# Build the TensorRT engine of an unpacked jetson bundle on this Jetson.
#   deploy/jetson/build_engine.sh BUNDLE_DIR [--trtexec] [--batch 1,1,8] [--workspace-mb 1024]
# Without --trtexec the TensorRT Python builder is used (edgekd_runtime.tensorrt_build: dynamic-batch
# profile, workspace limit, timing cache in BUNDLE_DIR/engines, sidecar JSON). With --trtexec the
# plan comes from trtexec (/usr/src/tensorrt/bin/trtexec) and the Python side writes its sidecar.
# Both run the bundle's own build_engine.sh, which reads model, precision and input from manifest.json.
set -euo pipefail
BUNDLE=${1:?usage: $0 BUNDLE_DIR [--trtexec] [--batch MIN,OPT,MAX] [--workspace-mb N]}
shift
exec "$BUNDLE/build_engine.sh" "$@"
