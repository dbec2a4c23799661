#!/usr/bin/env bash
# Set up, then run the test suite (slow end-to-end tests included). Extra arguments go to pytest.
#
# Test files that start subprocesses (a SIGKILLed run, torchrun, a fresh venv, a torch-free
# runtime, a sweep's worker processes) each run in a pytest process of their own: forking a process that already holds
# OpenVINO / ONNX Runtime / oneDNN thread pools has crashed with SIGSEGV here before (see
# DEVELOPERS.md), so they must not inherit everything the rest of the suite loaded. The frame
# cache's format tests (threads encoding JPEG/WebP with Pillow) run apart too: they were suspected
# of a crash that turned out to be the doctor's `uname -p` fork (DEVELOPERS.md, 2026-11-29). The
# files whose DataLoaders fork worker processes run apart as well: with the doctor's fork gone, a
# clean-clone CI pass still died with SIGSEGV when test_data_clips.py's loader forked its workers.
# With explicit test paths among the arguments, pytest runs just those, in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python

for arg in "$@"; do
  case "$arg" in tests/*|./tests/*) exec "$PY" -m pytest "$@" ;; esac
done

ISOLATED=(
  tests/test_resume.py
  tests/test_ddp.py
  tests/test_atomic.py
  tests/test_cli.py
  tests/test_runtime_torchfree.py
  tests/test_runtime_venv.py
  tests/test_deploy_files.py
  tests/test_sweep.py
  tests/test_data_cache_formats.py
  tests/test_data_cache_estimate.py
  tests/test_data_clips.py
  tests/test_data_stage.py
  tests/test_determinism.py
  tests/test_distill_schedule.py
)
ignores=()
for f in "${ISOLATED[@]}"; do ignores+=("--ignore=$f"); done

status=0
run() {  # pytest exit code 5 means "nothing selected" (e.g. -m slow on a file without slow tests)
  local rc=0
  "$PY" -m pytest "$@" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then status=$rc; fi
}
run "$@" "${ignores[@]}" tests
for f in "${ISOLATED[@]}"; do run "$@" "$f"; done
if [ "$status" -ne 0 ]; then echo "scripts/test.sh: some tests failed (exit $status)" >&2; fi
exit "$status"
