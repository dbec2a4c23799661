"""Run-directory bookkeeping: where each stage writes, and whether its output can be reused.

A finished stage leaves ``<stage>/stage.json``, its manifest: a key (a hash of the recipe sections
it reads, of the code it runs (``codehash.py``), of the keys of the stages it consumes and of the
sha256 of their artifact files), the inputs that key was built from, the recipe hash, package
versions and the git commit. Re-running a
recipe compares keys and reuses a stage whose key is unchanged, so editing ``distill.temperature``
re-runs distillation and everything after it, but not the teacher; replacing
``teacher/ckpt.pt`` by hand re-runs every stage that reads it.

Training stages also keep ``<stage>/last.pt`` (see ``edgekd.train.loop.ResumeSpec``) while they
run, so a killed run resumes after the last finished epoch; it is deleted once the stage is done.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.recipe import Recipe
from edgekd.stages.codehash import code_fingerprint
from edgekd.stages.table import STAGE_NAMES, get_stage, recipe_value
from edgekd.utils.atomic import write_json
from edgekd.utils.hashing import sha256_file, stable_hash
from edgekd.utils.versions import git_commit, package_versions

STAGES = STAGE_NAMES  # pipeline order (the stage table)
RESUME_FILE = "last.pt"  # per-epoch resume checkpoint of a training stage, removed when it is done
_BOOKKEEPING = ("stage.json", "manifest.json", RESUME_FILE, "metrics.jsonl", ".*")


def upstream_of(recipe: Recipe, stage: str) -> tuple[str, ...]:
    """The stages ``stage`` consumes: its table row's ``upstream``, plus each ``upstream_when``
    stage whose recipe key is true (the students read ``pretrain`` only when it is enabled, so with
    pretraining off their keys do not depend on it)."""
    row = get_stage(stage)
    extra = tuple(up for up, key in row.upstream_when if recipe_value(recipe, key))
    return (*row.upstream, *extra)


def external_inputs(recipe: Recipe, stage: str) -> list[str]:
    """Files outside the run directory that a stage reads (e.g. ``teacher.pretrained`` weights):
    their sha256 joins the key, so replacing such a file re-runs the stage like a recipe edit."""
    return [p for key in get_stage(stage).external_inputs if (p := recipe_value(recipe, key))]


class StageNotReady(RuntimeError):
    """A stage was asked to run before a stage it consumes has finished."""


@dataclass(frozen=True)
class RunDir:
    recipe: Recipe

    @property
    def root(self) -> Path:
        return self.recipe.run_dir

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def record(self, stage: str) -> dict[str, Any] | None:
        p = self.stage_dir(stage) / "stage.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            return None  # a damaged record means "not done"; the stage re-runs

    def inputs(self, stage: str) -> dict[str, Any]:
        """What ``stage`` consumes: the recipe sections' hash, and per upstream stage its recorded
        key and the sha256 of each artifact file (so a file replaced by hand counts as a change)."""
        upstream: dict[str, Any] = {}
        for up in upstream_of(self.recipe, stage):
            rec = self.record(up)
            if rec is None:
                raise StageNotReady(f"stage {stage!r} needs stage {up!r} first (no {self.stage_dir(up) / 'stage.json'}); "
                                    f"run `edgekd run` or the {up!r} stage")
            upstream[up] = {"key": rec["key"], "files": self.artifact_hashes(up)}
        row = get_stage(stage)
        out = {"stage": stage, "recipe": self.recipe.section_hash(*row.sections), "upstream": upstream,
               "code": code_fingerprint(row.entry.partition(":")[0])}
        external = {path: _cached_sha256(Path(path).expanduser()) for path in external_inputs(self.recipe, stage)
                    if Path(path).expanduser().is_file()}
        if external:  # only when present, so keys of recipes without such files are unchanged
            out["external_files"] = external
        return out

    def why_stale(self, stage: str) -> str:
        """Why ``stage`` is not reusable, in words for the log: never run, its own inputs changed
        (recipe sections, code files, external files; naming what), an artifact is gone, or a
        stage it consumes will re-run first."""
        rec = self.record(stage)
        if rec is None:
            return "not run before"
        try:
            now = self.inputs(stage)
        except StageNotReady as e:
            return str(e)
        was = rec.get("inputs", {})
        reasons = []
        if was.get("recipe") != now["recipe"]:
            reasons.append(f"recipe section(s) {', '.join(get_stage(stage).sections)} changed")
        old_code, new_code = was.get("code", {}), now["code"]
        changed = sorted(f for f in set(old_code) | set(new_code) if old_code.get(f) != new_code.get(f))
        if changed:
            shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
            reasons.append(f"code changed: {shown}")
        for up, info in now["upstream"].items():
            if was.get("upstream", {}).get(up) != info:
                reasons.append(f"upstream stage {up} changed")
        if was.get("external_files") != now.get("external_files"):
            reasons.append("external input file(s) changed")
        missing = [rel for rel in rec.get("artifacts", {}) if not (self.stage_dir(stage) / rel).is_file()]
        if missing:
            reasons.append(f"artifact(s) missing: {', '.join(missing[:3])}")
        if not reasons:
            stale_up = [up for up in upstream_of(self.recipe, stage) if not self.is_fresh(up)]
            reasons.append(f"upstream stage(s) {', '.join(stale_up)} re-run first" if stale_up else "inputs changed")
        return "; ".join(reasons)

    def key(self, stage: str) -> str:
        """Reuse key: a hash of :meth:`inputs`."""
        return stable_hash(self.inputs(stage))

    def artifact_hashes(self, stage: str) -> dict[str, str]:
        """sha256 of the stage's artifact files (its table row's ``artifacts``), by path relative to its directory."""
        root = self.stage_dir(stage)
        globs = get_stage(stage).artifacts
        out: dict[str, str] = {}
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            if globs is not None:
                if not any(fnmatch.fnmatch(rel, g) for g in globs):
                    continue
            elif any(fnmatch.fnmatch(path.name, b) for b in _BOOKKEEPING):
                continue
            out[rel] = _cached_sha256(path)
        return out

    def is_fresh(self, stage: str) -> bool:
        """Finished with today's inputs: its key matches and every stage it consumes is fresh too
        (so a changed ``distill`` section marks export, engines and bench stale before they run)."""
        rec = self.record(stage)
        try:
            if rec is None or rec.get("key") != self.key(stage):
                return False
        except StageNotReady:
            return False
        # its own artifacts must still exist (a deleted checkpoint re-runs the stage; a replaced one
        # is the user's choice and is kept, its new hash re-running the stages downstream)
        if any(not (self.stage_dir(stage) / rel).is_file() for rel in rec.get("artifacts", {})):
            return False
        return all(self.is_fresh(up) for up in upstream_of(self.recipe, stage))

    def mark_done(self, stage: str, *, seconds: float, outputs: dict[str, Any], cpu_seconds: float | None = None) -> None:
        """Write the stage manifest and drop the resume checkpoint the finished stage no longer needs.
        ``cpu_seconds`` (this process and its finished children, e.g. loader workers) measures the
        work itself where wall seconds also count waiting for a shared or stolen CPU."""
        inputs = self.inputs(stage)
        write_json(self.stage_dir(stage) / "stage.json", {
            "stage": stage,
            "key": stable_hash(inputs),
            "seconds": round(seconds, 2),
            "cpu_seconds": None if cpu_seconds is None else round(cpu_seconds, 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": outputs,
            "inputs": inputs,
            "artifacts": self.artifact_hashes(stage),
            "recipe_hash": self.recipe_hash(),
            "edgekd": __version__,
            "python": platform.python_version(),
            "packages": package_versions(),
            "git_commit": git_commit(),
        })
        (self.stage_dir(stage) / RESUME_FILE).unlink(missing_ok=True)

    def recipe_hash(self) -> str:
        return self.recipe.section_hash(*(f.name for f in dataclasses.fields(self.recipe)
                                          if dataclasses.is_dataclass(getattr(self.recipe, f.name))))

    def write_manifest(self) -> None:
        """Recipe, its hash, package versions and the git commit: what produced this run."""
        write_json(self.root / "manifest.json", {
            "recipe": self.recipe.to_dict(),
            "recipe_hash": self.recipe_hash(),
            "edgekd": __version__,
            "python": platform.python_version(),
            "packages": package_versions(),
            "git_commit": git_commit(),
            "machine": platform.machine(),
        })


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime): keys are computed several times per run
    and a teacher checkpoint is hundreds of MB."""
    st = os.stat(path)
    k = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if k not in _SHA_CACHE:
        _SHA_CACHE[k] = sha256_file(path)
    return _SHA_CACHE[k]
