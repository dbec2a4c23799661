#!/usr/bin/env bash
# Run an unpacked jetson bundle on a bare Jetson (outside Docker): builds the engine on first use.
#   deploy/jetson/run.sh BUNDLE_DIR --camera 0
#   deploy/jetson/run.sh BUNDLE_DIR /videos/clip.mp4 --stride 8
set -euo pipefail
BUNDLE=${1:?usage: $0 BUNDLE_DIR (VIDEO | --camera N) [runtime options]}
shift
exec "$BUNDLE/run.sh" "$@"
