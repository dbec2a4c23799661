"""Where edgekd keeps per-machine caches of measured facts (precision probes)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """``$EDGEKD_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgekd``, else ``~/.cache/edgekd``.

    Facts cached here belong to the machine (a CPU model, a torch version), not to a run, so one
    probe serves every recipe; the test suite points it at a temporary folder."""
    env = os.environ.get("EDGEKD_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "edgekd"
