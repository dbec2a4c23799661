"""The ``cycle`` augmentation schedule: V consecutive epochs meet every (video, variant) once, so a
teacher-output cache is full after V epochs; and the OpenVINO teacher behind that cache."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from test_data_clips import make_split  # tiny coded MJPG videos (tests/ is on sys.path)

from edgekd.data.cache import FrameCache
from edgekd.data.clips import ClipDataset, ClipSpec, make_loader
from edgekd.distill.kd import build_kd
from edgekd.models import build_model
from edgekd.recipe import DistillConfig, RecipeError
from edgekd.stages.validate import parse_recipe
from edgekd.train.loop import FitOptions, ResumeSpec, fit

H, W = 48, 64
SPEC = ClipSpec(clip_len=4, crop=(16, 16))
SHAPE = (3, 4, 16, 16)
CLASSES = 3


def _dataset(tmp_path: Path, *, variants: int = 2, schedule: str = "cycle", videos: int = 6) -> ClipDataset:
    split = make_split(tmp_path / "videos", {f"v{i}": 9 + i for i in range(videos)})
    # labels are video indices (one class per video in make_split): fold them into CLASSES
    split = type(split)(split.root, [f"c{i}" for i in range(CLASSES)],
                        [type(it)(it.rel, it.label % CLASSES) for it in split.train], [],
                        [type(it)(it.rel, it.label % CLASSES) for it in split.test], "test videos")
    cache = FrameCache(tmp_path / "cache", resize=(H, W))
    ds = ClipDataset(split, "train", cache, SPEC, train=True, aug_variants=variants, aug_schedule=schedule,
                     seed=7, with_extras=True)
    for i in range(len(ds)):
        ds._frames(i)  # decode now: no cv2 work after the loader forks its workers
    return ds


def _epoch_samples(ds: ClipDataset, epoch: int) -> list[tuple[tuple[int, int], torch.Tensor]]:
    ds.set_epoch(epoch)
    out = []
    for i in range(len(ds)):
        clip, _, extras = ds[i]
        out.append((tuple(extras["clip_key"].tolist()), clip))
    return out


def test_cycle_meets_every_video_variant_once_per_v_epochs_and_then_repeats(tmp_path):
    ds = _dataset(tmp_path, variants=2)
    e0, e1, e2 = (_epoch_samples(ds, e) for e in (0, 1, 2))
    keys01 = [k for k, _ in e0] + [k for k, _ in e1]
    assert sorted(keys01) == [(i, v) for i in range(len(ds)) for v in (0, 1)]  # each pair exactly once
    assert {v for (_, v), _ in e0} == {0, 1}  # the per-video offset mixes variants within an epoch
    assert [k for k, _ in e2] == [k for k, _ in e0]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(e2, e0))  # epoch 2 replays epoch 0's clips exactly
    assert not any(torch.equal(a, b) for (_, a), (_, b) in zip(e1, e0))  # the other variant is another clip
    # random schedule: unchanged behaviour (variants from torch's RNG, so reproducible under its seed)
    rnd = _dataset(tmp_path, variants=2, schedule="random")
    torch.manual_seed(0)
    a = [k for k, _ in _epoch_samples(rnd, 0)]
    torch.manual_seed(0)
    assert [k for k, _ in _epoch_samples(rnd, 5)] == a


def test_cycle_schedule_is_checked_in_the_dataset_and_the_recipe(tmp_path):
    split = make_split(tmp_path / "videos", {"a": 9})
    cache = FrameCache(tmp_path / "cache", resize=(H, W))
    with pytest.raises(ValueError, match="aug_variants"):
        ClipDataset(split, "train", cache, SPEC, train=True, aug_schedule="cycle")
    with pytest.raises(ValueError, match="aug_schedule"):
        ClipDataset(split, "train", cache, SPEC, train=True, aug_variants=2, aug_schedule="roundrobin")
    with pytest.raises(RecipeError, match="student.aug_schedule: 'cycle' needs student.aug_variants"):
        parse_recipe({"name": "x", "student": {"aug_schedule": "cycle"}})
    with pytest.raises(RecipeError, match="aug_schedule"):
        parse_recipe({"name": "x", "student": {"aug_variants": 2, "aug_schedule": "sometimes"}})
    r = parse_recipe({"name": "x", "student": {"aug_variants": 3, "aug_schedule": "cycle"}})
    assert r.student.aug_schedule == "cycle" and r.teacher.aug_schedule == "random"
    with pytest.raises(RecipeError, match="data.aug_variants: augmentation variants are now set per network"):
        parse_recipe({"name": "x", "data": {"aug_variants": 3}})


def _teacher() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("c3d_teacher", num_classes=CLASSES, input_size=SHAPE[1:], width_mult=0.125, dropout=0.0)


def _student() -> torch.nn.Module:
    torch.manual_seed(2)
    return build_model("c3d_student", num_classes=CLASSES, input_size=SHAPE[1:], width_mult=0.25, dropout=0.0)


def _kd_fit(tmp_path: Path, ds: ClipDataset, *, name: str, epochs: int, cache: str = "memory",
            backend: str = "pytorch", precision: str = "fp32", workers: int = 0,
            resume: ResumeSpec | None = None, seed: int = 3):
    """KD training through ``fit``; records per epoch (as ``fit`` set it on the dataset) the clip keys
    of every batch and the teacher cache's miss count after it."""
    student = _student()
    kd = build_kd(DistillConfig(method="ullah", cache=cache, teacher_backend=backend), _teacher(), student,
                  teacher_input_shape=SHAPE, student_input_shape=SHAPE, precision=precision, channels_last=False)
    keys: dict[int, list[tuple[int, int]]] = defaultdict(list)
    misses: dict[int, int] = {}

    def loss(logits, labels, clips, extras):
        keys[ds.epoch] += [tuple(k) for k in extras["clip_key"].tolist()]
        out = kd.loss_fn(logits, labels, clips, extras)
        misses[ds.epoch] = kd.teacher.misses
        return out

    torch.manual_seed(seed)
    loader = make_loader(ds, batch_size=4, shuffle=True, workers=workers, seed=0)  # batches of 4 and 2
    val = make_loader(ds, batch_size=6, shuffle=False, workers=0, seed=0)
    metrics = tmp_path / f"{name}.jsonl"
    fit(student, loader, val, FitOptions(epochs=epochs, lr=1e-3, precision=precision, channels_last=False),
        loss_fn=loss, extra_modules=kd.extra_modules, on_best=lambda m, r: None, metrics_path=metrics, resume=resume)
    losses = [json.loads(line)["train_loss"] for line in metrics.read_text().splitlines()]
    return losses, keys, misses, kd


def test_fit_sets_the_epoch_so_the_cache_fills_in_v_epochs_then_never_misses(tmp_path):
    """With forked loader workers: fit's ``set_epoch`` reaches them (keys follow the cycle)."""
    ds = _dataset(tmp_path, variants=2)
    n = len(ds)
    losses, keys, misses, kd = _kd_fit(tmp_path, ds, name="cycle", epochs=4, workers=2)
    assert sorted(keys) == [1, 2, 3, 4]
    assert sorted(keys[1] + keys[2]) == [(i, v) for i in range(n) for v in (0, 1)]
    assert sorted(keys[3]) == sorted(keys[1]) and sorted(keys[4]) == sorted(keys[2])
    assert misses[1] == n and misses[2] == 2 * n  # every key of the first V epochs is new...
    assert misses[3] == misses[4] == 2 * n  # ...and from epoch V + 1 on there is no miss at all
    st = kd.teacher.stats()
    assert st["entries"] == 2 * n and st["hits"] == 2 * n and st["uncacheable"] == 0
    # the cache changes no loss: the same training without it, exactly
    off, _, _, _ = _kd_fit(tmp_path, ds, name="off", epochs=4, cache="off", workers=2)
    assert losses == off and len(set(losses)) == 4


def test_resume_with_the_cycle_schedule_equals_a_straight_run(tmp_path):
    ds = _dataset(tmp_path, variants=3)
    straight, keys, _, _ = _kd_fit(tmp_path / "a", ds, name="m", epochs=4,
                                   resume=ResumeSpec(tmp_path / "a.pt", "k"))
    _kd_fit(tmp_path / "b", ds, name="m", epochs=2, resume=ResumeSpec(tmp_path / "b.pt", "k"))
    ds.set_epoch(0)  # a fresh process would start at epoch 0: fit must set the restored epoch
    resumed, rkeys, _, _ = _kd_fit(tmp_path / "b", ds, name="m", epochs=4, resume=ResumeSpec(tmp_path / "b.pt", "k"),
                                   seed=9)
    assert resumed == straight
    assert rkeys[3] == keys[3] and rkeys[4] == keys[4]


def _openvino_precisions() -> list[str]:
    ov = pytest.importorskip("openvino")
    from edgekd.engines.openvino_engine import supported_precision_hints

    hints = supported_precision_hints(ov.Core())
    return [p for p, h in (("fp32", "f32"), ("bf16", "bf16")) if h in hints]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_teacher_behind_the_cache_gives_identical_losses(tmp_path, precision):
    """``teacher_backend: openvino`` + ``cache: memory``: the cache replays the OpenVINO teacher's
    outputs exactly (it runs at one batch size), so every epoch's loss equals the uncached run's."""
    if precision not in _openvino_precisions():
        pytest.skip(f"this CPU's OpenVINO plugin cannot run {precision}")
    ds = _dataset(tmp_path, variants=2)
    n = len(ds)
    cached, _, misses, kd = _kd_fit(tmp_path, ds, name="ov_cached", epochs=3, backend="openvino", precision=precision)
    assert kd.teacher.teacher.describe()["backend"] == "openvino"
    assert misses[2] == misses[3] == 2 * n and kd.teacher.stats()["hits"] == n
    uncached, _, _, _ = _kd_fit(tmp_path, ds, name="ov_off", epochs=3, cache="off", backend="openvino",
                                precision=precision)
    assert cached == uncached and all(torch.isfinite(torch.tensor(cached)))
