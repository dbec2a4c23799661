"""Suite-wide settings: machine-level caches (the bf16 precision probe) go to a temporary folder,
so tests neither read a developer's cached results nor leave files in their home directory."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set at import, before any test (or subprocess a test starts) reads it; subprocesses inherit it.
os.environ.setdefault("EDGEKD_CACHE_DIR", tempfile.mkdtemp(prefix="edgekd-test-cache-"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny tensors (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``): on a shared 2-core machine under load, two
    threads made the X3D and TSM model tests take 113 s instead of 13 s (they wait on each other per op)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
