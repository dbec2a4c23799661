"""Suite-wide settings: machine-level caches (the bf16 precision probe) go to a temporary folder,
so tests neither read a developer's cached results nor leave files in their home directory."""

from __future__ import annotations

import os
import tempfile

# Set at import, before any test (or subprocess a test starts) reads it; subprocesses inherit it.
os.environ.setdefault("EDGEKD_CACHE_DIR", tempfile.mkdtemp(prefix="edgekd-test-cache-"))
