"""Versions of what produced an artifact: installed packages and the git commit of this checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGES = ("torch", "numpy", "opencv-contrib-python-headless", "onnx", "onnxruntime", "onnxsim", "openvino", "nncf",
            "onnxconverter-common")


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def git_commit() -> str | None:
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
