"""Run-directory bookkeeping: where each stage writes, and whether its output can be reused.

A finished stage leaves ``<stage>/stage.json`` with a key: a hash of the recipe sections it reads
and of the keys of the stages it consumes. Re-running a recipe compares keys and reuses a stage
whose key is unchanged, so editing ``distill.temperature`` re-runs distillation and everything
after it, but not the teacher.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.recipe import Recipe
from edgekd.utils.atomic import write_json
from edgekd.utils.hashing import stable_hash

STAGES = ("data", "teacher", "student_scratch", "student_kd", "export", "engines", "bench")
MODEL_ROLES = ("teacher", "student_scratch", "student_kd")

# recipe sections each stage reads, and the stages whose outputs it consumes
_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "teacher": ("teacher",),
    "student_scratch": ("student",),
    "student_kd": ("student", "distill"),
    "export": ("export",),
    "engines": ("engines",),
    "bench": ("bench",),
}
UPSTREAM: dict[str, tuple[str, ...]] = {
    "data": (),
    "teacher": ("data",),
    "student_scratch": ("data",),
    "student_kd": ("data", "teacher"),
    "export": ("data", *MODEL_ROLES),
    "engines": ("data", "export"),
    "bench": ("data", *MODEL_ROLES, "export", "engines"),
}


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

    def key(self, stage: str) -> str:
        """Reuse key: recipe sections this stage reads + the recorded keys of its upstream stages."""
        upstream = {}
        for up in UPSTREAM[stage]:
            rec = self.record(up)
            if rec is None:
                raise StageNotReady(f"stage {stage!r} needs stage {up!r} first (no {self.stage_dir(up) / 'stage.json'}); "
                                    f"run `edgekd run` or the {up!r} stage")
            upstream[up] = rec["key"]
        payload = {"stage": stage, "recipe": self.recipe.section_hash(*_SECTIONS[stage]), "upstream": upstream}
        return stable_hash(payload)

    def is_fresh(self, stage: str) -> bool:
        """Finished with today's inputs: its key matches and every stage it consumes is fresh too
        (so a changed ``distill`` section marks export, engines and bench stale before they run)."""
        rec = self.record(stage)
        try:
            if rec is None or rec.get("key") != self.key(stage):
                return False
        except StageNotReady:
            return False
        return all(self.is_fresh(up) for up in UPSTREAM[stage])

    def mark_done(self, stage: str, *, seconds: float, outputs: dict[str, Any]) -> None:
        write_json(self.stage_dir(stage) / "stage.json", {
            "stage": stage,
            "key": self.key(stage),
            "seconds": round(seconds, 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": outputs,
        })

    def write_manifest(self) -> None:
        """Recipe, its hash, package versions and the git commit: what produced this run."""
        write_json(self.root / "manifest.json", {
            "recipe": self.recipe.to_dict(),
            "recipe_hash": self.recipe.section_hash("data", "teacher", "student", "distill", "export", "engines", "bench"),
            "edgekd": __version__,
            "python": platform.python_version(),
            "packages": package_versions(),
            "git_commit": _git_commit(),
            "machine": platform.machine(),
        })


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("torch", "numpy", "opencv-contrib-python-headless", "onnx", "onnxruntime", "onnxsim", "openvino", "nncf"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _git_commit() -> str | None:
    """HEAD's commit read from the .git directory (no subprocess: forking a process that holds
    OpenVINO/ONNX Runtime/DataLoader threads crashed here)."""
    for parent in Path(__file__).resolve().parents:
        head = parent / ".git" / "HEAD"
        if head.is_file():
            ref = head.read_text().strip()
            if not ref.startswith("ref: "):
                return ref or None
            target = parent / ".git" / ref[5:]
            if target.is_file():
                return target.read_text().strip() or None
            packed = parent / ".git" / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref[5:]):
                        return line.split()[0]
            return None
    return None
