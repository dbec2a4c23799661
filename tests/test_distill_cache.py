"""The (video, variant) teacher-output cache: exact replay, partial misses, persistence."""

import json

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from edgekd.distill.cache import CachedTeacher
from edgekd.distill.kd import build_kd
from edgekd.distill.teacher import TorchTeacher
from edgekd.models import build_model
from edgekd.recipe import DistillConfig
from edgekd.train.loop import FitOptions, fit

SHAPE = (3, 4, 16, 16)
CLASSES = 4


class Replayable(Dataset):
    """A clip is a pure function of (video, variant): what ``data.aug_variants`` guarantees."""

    def __init__(self, videos: int, variants: int) -> None:
        self.videos, self.variants = videos, variants

    def __len__(self) -> int:
        return self.videos

    def __getitem__(self, i: int):
        v = int(torch.randint(0, self.variants, ()))  # the variant drawn this epoch
        g = torch.Generator().manual_seed(1000 * i + v)
        return torch.randn(*SHAPE, generator=g), i % CLASSES, {"clip_key": torch.tensor([i, v])}


def _teacher() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("c3d_teacher", num_classes=CLASSES, input_size=SHAPE[1:], width_mult=0.125, dropout=0.0)


def _student() -> torch.nn.Module:
    torch.manual_seed(2)
    return build_model("c3d_student", num_classes=CLASSES, input_size=SHAPE[1:], width_mult=0.25, dropout=0.0)


@pytest.mark.parametrize("method", ["ullah", "hu"])
def test_training_with_the_cache_gives_identical_losses(tmp_path, method):
    """Two epochs of real training with and without the cache: every epoch's loss is identical,
    while the cached run sends fewer clips through the teacher."""
    rows = {}
    for cache in ("off", "memory"):
        student = _student()
        kd = build_kd(DistillConfig(method=method, cache=cache), _teacher(), student, teacher_input_shape=SHAPE,
                      student_input_shape=SHAPE, precision="fp32", channels_last=False)
        torch.manual_seed(3)  # same shuffles and variant draws in both runs
        loader = DataLoader(Replayable(6, 2), batch_size=4, shuffle=True)  # batches of 4 and 2
        val = DataLoader(Replayable(2, 1), batch_size=2)
        metrics = tmp_path / f"{cache}.jsonl"
        fit(student, loader, val, FitOptions(epochs=3, lr=1e-3, precision="fp32", channels_last=False),
            loss_fn=kd.loss_fn, extra_modules=kd.extra_modules, on_best=lambda m, r: None, metrics_path=metrics)
        rows[cache] = [json.loads(line)["train_loss"] for line in metrics.read_text().splitlines()]
        if cache == "memory":
            stats = kd.teacher.stats()
    assert rows["memory"] == rows["off"]  # exact, not approximate
    assert stats["hits"] > 0 and stats["misses"] <= 12 and stats["entries"] == stats["misses"]


def test_whole_batches_run_the_teacher_and_unreproducible_clips_are_never_stored():
    calls = []
    runner = TorchTeacher(_teacher(), input_shape=SHAPE)
    counting = CachedTeacher(lambda_teacher(runner, calls))
    x = torch.randn(3, *SHAPE)
    first = counting(x, torch.tensor([[0, 0], [1, 0], [2, -1]]))
    assert calls == [3] and len(counting) == 2
    again = counting(x[[1, 0, 2]], torch.tensor([[1, 0], [0, 0], [2, -1]]))
    assert calls == [3, 3]  # the v = -1 clip missed, so the batch ran whole (fixed batch size)
    assert torch.equal(again.logits, first.logits[[1, 0, 2]])
    hit = counting(x[[1, 0]], torch.tensor([[1, 0], [0, 0]]))
    assert calls == [3, 3] and torch.equal(hit.logits, first.logits[[1, 0]])
    assert counting.stats() == {"entries": 2, "hits": 4, "misses": 2, "uncacheable": 2, "hit_rate": 0.5}
    short = counting(x[:1], None)  # a short batch is padded to the size the teacher runs at
    assert calls[-1] == 3 and torch.equal(short.logits, first.logits[:1])
    with pytest.raises(ValueError, match="clip_key"):
        counting(x, torch.tensor([0, 1, 2]))


def lambda_teacher(runner, calls):
    class Counting:
        feature_dim = runner.feature_dim

        def __call__(self, x):
            calls.append(x.shape[0])
            return runner(x)

        def describe(self):
            return runner.describe()

    return Counting()


def test_persisted_cache_round_trips_and_ignores_another_fingerprint(tmp_path):
    runner = TorchTeacher(_teacher(), input_shape=SHAPE, feature_tap="fc8:input")
    a = CachedTeacher(runner, fingerprint="abc")
    x = torch.randn(2, *SHAPE)
    out = a(x, torch.tensor([[4, 1], [5, 0]]))
    a.save(tmp_path / "c.pt")
    b = CachedTeacher(runner, fingerprint="abc")
    assert b.load(tmp_path / "c.pt") and len(b) == 2
    replay = b(torch.zeros(2, *SHAPE), torch.tensor([[5, 0], [4, 1]]))  # inputs ignored on a hit
    assert torch.equal(replay.logits, out.logits[[1, 0]]) and torch.equal(replay.features, out.features[[1, 0]])
    other = CachedTeacher(runner, fingerprint="other teacher")
    assert not other.load(tmp_path / "c.pt") and len(other) == 0
