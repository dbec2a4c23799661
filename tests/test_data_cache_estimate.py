"""The cache estimate: exact where the ratio estimator must be (identical videos), the refusal when
the cache would not fit (naming both numbers) in the library, the data stage and `edgekd data
--estimate`, and nothing written before it."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgekd.cli import main
from edgekd.data.cache import FrameCache
from edgekd.data.estimate import (
    CacheSpaceError,
    check_space,
    estimate_cache,
    free_space,
)
from edgekd.stages.data_stage import ESTIMATE_SAMPLE, run_data
from edgekd.stages.rundir import RunDir
from edgekd.stages.validate import parse_recipe

torch.set_num_threads(1)
H, W, N = 24, 32, 10
Usage = namedtuple("Usage", "total used free")


def write_video(path: Path, level: int = 90, n: int = N) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    for k in range(n):
        f = np.full((H, W, 3), level, np.uint8)
        f[6:14, (2 * k) % (W - 8) : (2 * k) % (W - 8) + 8] = 250
        w.write(f)
    w.release()
    return path


def tree(root: Path, per_class: int = 6) -> list[Path]:
    """3 classes x ``per_class`` videos, every one the same frames (so every entry has one size)."""
    return [write_video(root / c / f"{c}_{i}.avi") for c in ("a", "b", "c") for i in range(per_class)]


def small_disk(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 10**12 - free, free))


@pytest.mark.parametrize("fmt", ["raw", "jpeg", "webp"])
def test_estimate_is_exact_for_identical_videos(tmp_path: Path, fmt: str) -> None:
    """Cache bytes / source bytes of the sample x source bytes of the rest: exact when every video
    is the same, so the projection must equal the bytes the warm-up then writes."""
    videos = tree(tmp_path / "v")
    cache = FrameCache(tmp_path / "cache", resize=(H, W), format=fmt)
    est = estimate_cache(cache, videos + [tmp_path / "v" / "gone.avi"], sample=4, threads=2)
    assert (est.videos, est.cached, est.todo, est.sampled, est.sample_failed) == (19, 0, 18, 4, 0)
    assert est.frames == 18 * N and est.flow_bytes is None and est.seconds is not None and est.seconds > 0
    assert est.cache_bytes_hi == pytest.approx(est.cache_bytes, abs=1)  # no spread in the sample, no interval
    assert not list((tmp_path / "cache").rglob("*.*"))  # nothing written
    assert cache.warm(videos, progress=False) == []
    actual = sum(cache.entry_path(v).stat().st_size for v in videos)
    assert est.cache_bytes == actual
    again = estimate_cache(cache, videos, sample=4)
    assert (again.cached, again.todo, again.cache_bytes) == (18, 0, 0) and "18 cached, 0 to decode" in again.report()


def test_interval_widens_with_spread_in_the_sample(tmp_path: Path) -> None:
    """Videos of 5 and 40 frames: the ratio estimator's interval (Student t over the sampled
    residuals) is wider than the point estimate, and covers the bytes really written here."""
    videos = [write_video(tmp_path / "v" / f"s{i}.avi", n=5) for i in range(6)]
    videos += [write_video(tmp_path / "v" / f"l{i}.avi", n=40, level=30 + 20 * i) for i in range(6)]
    cache = FrameCache(tmp_path / "cache", resize=(H, W), format="webp")
    est = estimate_cache(cache, videos, sample=5)
    assert est.cache_bytes is not None and est.cache_bytes_hi is not None and est.cache_bytes_hi > est.cache_bytes
    assert "95% up to" in est.report()
    cache.warm(videos, progress=False)
    assert sum(cache.entry_path(v).stat().st_size for v in videos) <= est.cache_bytes_hi


def test_flow_adds_its_size_and_time(tmp_path: Path) -> None:
    videos = tree(tmp_path / "v", per_class=2)
    cache = FrameCache(tmp_path / "cache", resize=(H, W), format="webp")
    frames_only = estimate_cache(cache, videos, sample=2)
    with_flow = estimate_cache(cache, videos, sample=2, flow="farneback")
    assert with_flow.flow_bytes and with_flow.flow_bytes > 0 and with_flow.flow_seconds and with_flow.flow_seconds > 0
    assert with_flow.cache_bytes == pytest.approx(frames_only.cache_bytes + with_flow.flow_bytes, abs=2)
    assert "flow farneback" in with_flow.report()


def test_refusal_names_both_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    videos = tree(tmp_path / "v", per_class=2)
    cache = FrameCache(tmp_path / "not" / "yet" / "cache", resize=(H, W), format="jpeg")
    small_disk(monkeypatch, 1000)
    assert free_space(cache.cache_dir) == 1000  # asks the nearest existing folder's filesystem
    est = estimate_cache(cache, videos, sample=2)
    assert est.cache_bytes is not None and est.cache_bytes > 1000 and not est.fits
    with pytest.raises(CacheSpaceError) as info:
        check_space(est)
    msg = str(info.value)
    assert f"({est.cache_bytes} bytes, jpeg q90)" in msg and "has 1.0 KB free (1000 bytes)" in msg
    assert str(cache.cache_dir) in msg and "DOES NOT FIT" in est.report()
    small_disk(monkeypatch, est.cache_bytes)
    check_space(estimate_cache(cache, videos, sample=2))  # exactly enough fits


def test_all_bad_sample_gives_no_estimate_and_no_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = [tmp_path / f"bad{i}.avi" for i in range(3)]
    for p in bad:
        p.write_bytes(b"not a video" * 40)
    small_disk(monkeypatch, 10)
    est = estimate_cache(FrameCache(tmp_path / "cache", resize=(H, W)), bad, sample=3)
    assert est.cache_bytes is None and est.sample_failed == 3 and est.fits and "no estimate" in est.report()
    check_space(est)  # the data stage then lists the bad files itself


def recipe(tmp_path: Path, root: Path, **data: object):
    base = {"source": "folder", "root": str(root), "clip_len": 4, "resize": [H, W], "crop": [16, 16],
            "workers": 0, "cache_dir": str(tmp_path / "cache")}
    return parse_recipe({"name": "t", "runs_dir": str(tmp_path / "runs"), "data": {**base, **data}})


def test_data_stage_refuses_before_writing_and_reports_the_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    videos = tree(tmp_path / "v")
    assert len(videos) >= 2 * ESTIMATE_SAMPLE  # long enough for the stage to estimate first
    rd = RunDir(recipe(tmp_path, tmp_path / "v"))
    small_disk(monkeypatch, 5000)
    with pytest.raises(CacheSpaceError, match=r"has 5.0 KB free \(5000 bytes\)"):
        run_data(rd)
    assert not (tmp_path / "cache").exists()  # refused having written nothing
    monkeypatch.undo()
    run_data(rd)
    out = capsys.readouterr().out
    assert "18 videos, 0 cached, 18 to decode" in out and "estimate from 8 sampled videos" in out
    cache = json.loads((rd.stage_dir("data") / "report.json").read_text())["cache"]
    assert cache["format"] == "webp" and cache["quality"] == 90 and not cache["lossless"]
    assert cache["bytes"] == sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.webp.pack"))
    assert cache["estimate"]["cache_bytes"] == cache["bytes"]  # identical videos: the estimate is exact
    assert cache["per_source"] == round(cache["bytes"] / cache["source_bytes"], 3)


def test_cli_estimate_prints_and_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    tree(tmp_path / "v", per_class=2)
    yaml = tmp_path / "r.yaml"
    yaml.write_text(f"name: t\nruns_dir: {tmp_path / 'runs'}\ndata:\n  source: folder\n  root: {tmp_path / 'v'}\n"
                    f"  resize: [{H}, {W}]\n  crop: [16, 16]\n  clip_len: 4\n  cache_dir: {tmp_path / 'cache'}\n"
                    "  cache_format: jpeg\n")
    assert main(["data", str(yaml), "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "frame cache (jpeg q90, 24x32)" in out and "6 videos, 0 cached, 6 to decode" in out and "free space" in out
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs" / "t" / "data" / "split.json").exists()
    small_disk(monkeypatch, 100)
    assert main(["data", str(yaml), "--estimate"]) == 2
    err = capsys.readouterr().err
    assert "the frame cache would not fit" in err and "has 100 B free (100 bytes)" in err
