#!/usr/bin/env bash
# Set up, then run the main job: recipes/quickstart.yaml on built-in synthetic videos.
# Extra arguments go to `edgekd run`, e.g. --set teacher.epochs=2
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/edgekd run recipes/quickstart.yaml "$@"
