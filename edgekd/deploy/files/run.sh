#!/usr/bin/env bash
# Jetson bundle entry point (the container ENTRYPOINT; also usable on a bare Jetson): build the engine if this device has none
# yet, then classify. Arguments go to the runtime, e.g. `--camera 0` or `/videos/clip.mp4 --stride 8`.
set -euo pipefail
BUNDLE=${BUNDLE:-$(cd "$(dirname "$0")" && pwd)}
cd "$BUNDLE"
PLAN=$(python3 -c 'import json; print(json.load(open("manifest.json"))["model"]["engine"])')
if [ ! -f "$PLAN" ]; then
  echo "no TensorRT engine for this device yet: building $PLAN" >&2
  ./build_engine.sh ${EDGEKD_BUILD_ARGS:-}
fi
exec python3 -m edgekd_runtime . "$@"
