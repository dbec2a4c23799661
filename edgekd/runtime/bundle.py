"""Deploy bundles: the manifest format, hashing, and verification on load.

A bundle is a directory (also shipped as ``.tar.gz``) with ``manifest.json`` at its root. The
manifest lists the sha256 of every other file; :func:`load_bundle` re-hashes them all and refuses
a bundle that does not match, because a half-copied model or an edited preprocessing file would
otherwise produce plausible-looking but wrong labels on a device nobody is watching.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preprocess import PreprocessSpec

__all__ = ["BUNDLE_FORMAT", "MANIFEST", "Bundle", "BundleError", "hash_tree", "load_bundle", "sha256_file"]

BUNDLE_FORMAT = "edgekd-bundle-v1"
MANIFEST = "manifest.json"
# Written on the device after unpacking (engines are built there): never listed, never verified.
DEVICE_LOCAL_DIR = "engines"


class BundleError(RuntimeError):
    """The bundle is missing, malformed or does not match its manifest; the message says which file."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: where it is, what it targets, the model to load and how to feed it."""

    root: Path
    manifest: dict[str, Any]
    spec: PreprocessSpec
    labels: tuple[str, ...]

    @property
    def target(self) -> str:
        return str(self.manifest["target"])

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    @property
    def model(self) -> dict[str, Any]:
        """``{"backend": ..., "file": ...}`` plus backend-specific keys (e.g. the engine path on Jetson)."""
        return dict(self.manifest["model"])

    def path(self, relative: str) -> Path:
        return self.root / relative


def sha256_file(path: str | Path) -> str:
    """Full sha256 of a file's bytes, read in 1 MiB chunks (a copy of ``edgekd.utils.hashing``'s,
    held identical by a test: the runtime cannot import edgekd)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: str | Path) -> dict[str, str]:
    """``{posix relative path: sha256}`` of every regular file under ``root`` except the manifest
    and device-local engines; sorted, so the manifest is byte-stable for the same contents."""
    root = Path(root)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or rel == MANIFEST or rel.split("/")[0] == DEVICE_LOCAL_DIR or "__pycache__" in rel:
            continue
        out[rel] = sha256_file(p)
    return out


def load_bundle(root: str | Path, *, verify: bool = True) -> Bundle:
    """Read and (by default) verify a bundle directory; :class:`BundleError` names what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"bundle not found: {root} is not a directory (unpack the .tar.gz first)")
    manifest = _read_json(root / MANIFEST, "manifest")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{root / MANIFEST}: format is {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    for key in ("target", "precision", "model", "files", "preprocess", "labels"):
        if key not in manifest:
            raise BundleError(f"{root / MANIFEST}: missing key {key!r}")
    if verify:
        verify_files(root, manifest["files"])
    spec_data = _read_json(root / manifest["preprocess"], "preprocessing spec")
    try:
        spec = PreprocessSpec.from_dict(spec_data)
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"{root / manifest['preprocess']}: bad preprocessing spec: {exc}") from exc
    labels = tuple(json.loads((root / manifest["labels"]).read_text(encoding="utf-8")))
    if not labels:
        raise BundleError(f"{root / manifest['labels']}: no labels")
    return Bundle(root, manifest, spec, labels)


def verify_files(root: Path, expected: dict[str, str]) -> None:
    """Every listed file exists with its sha256, and no unlisted file sits in the bundle."""
    actual = hash_tree(root)
    missing = sorted(set(expected) - set(actual))
    changed = sorted(p for p in expected if p in actual and actual[p] != expected[p])
    extra = sorted(set(actual) - set(expected))
    problems = [f"missing: {p}" for p in missing] + [f"sha256 mismatch: {p}" for p in changed]
    problems += [f"not in manifest: {p}" for p in extra]
    if problems:
        raise BundleError(
            f"bundle {root} does not match its manifest ({len(problems)} problem(s)); re-copy or re-pack it:\n  "
            + "\n  ".join(problems)
        )


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise BundleError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: {what} is not valid JSON ({exc})") from exc
