"""The bf16 precision probe and the bf16 -> fp32 fallback.

What holds on any CPU is tested unconditionally: the probe's arithmetic (emulated rounding,
tolerance, verdicts) on synthetic passes, its verdicts on networks with injected faults, the
decision rules and cache, and the fallback's rollback. Whether this CPU's bf16 kernels are sound is
a measurement, not a test outcome: the one test that trains in bf16 runs only where the probe
passes, and otherwise skips with the probe's verdict.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from edgekd.train import precision as P
from edgekd.train.loop import (
    FitOptions,
    ResumeSpec,
    cross_entropy_loss,
    fit,
    load_resume_state,
)
from edgekd.utils.cpu import parse_cpuinfo

U = P.BF16_UNIT_ROUNDOFF


# ----------------------------------------------------------------------------- emulation


def test_emulated_linear_rounds_exactly_where_autocast_casts():
    torch.manual_seed(0)
    lin = nn.Linear(7, 5)
    x = torch.randn(3, 7, requires_grad=True)
    ref = lin(x)
    emul = P.emulate_bf16_autocast(nn.Sequential(lin))

    def r(t):
        return t.to(torch.bfloat16).float()

    y = emul(x)
    want = r(F.linear(r(x), r(lin.weight), r(lin.bias)))
    assert torch.equal(y, want)  # the same fp32 arithmetic on the same rounded operands: bit-equal
    assert torch.equal(y, r(y))  # every output is a bf16 value
    # rounding moves each operand by at most u relative, so the output by a few u of |w||x|
    bound = 3 * U * (lin.weight.abs() @ x.abs().T).T + U * lin.bias.abs() + U * ref.abs() + 1e-7
    assert bool(((y - ref).abs() <= bound).all())
    y.sum().backward()
    assert torch.equal(lin.weight.grad, r(lin.weight.grad)) and torch.equal(x.grad, r(x.grad))


# ----------------------------------------------------------------------------- tolerance arithmetic


def _pass(loss: float, **grads: list[float]) -> P._Pass:
    return P._Pass(loss, {k: torch.tensor(v) for k, v in grads.items()}, 1.0)


def test_tolerance_is_twice_the_rounding_error_plus_four_units():
    fp32 = _pass(1.0, w=[1.0, 0.0, 0.0, 0.0])
    emul = _pass(1.0, w=[1.0, 0.05, 0.0, 0.0])  # correct rounding lands 5% away
    ok = _pass(1.0, w=[1.0, 0.0, 0.1, 0.0])  # 10% away: within 2 * 5% + 4u
    bad = _pass(1.0, w=[1.0, 0.0, 0.12, 0.0])  # 12% > 2 * 5% + 4u = 11.6%
    r = P.ProbeResult(sound=True, faster=True, verdict="")
    P._check_tolerance(r, fp32, ok, emul)
    assert not r.out_of_tolerance and r.worst["tensor"] == "w"
    assert r.worst["tolerance"] == pytest.approx(2 * 0.05 + 4 * U, abs=1e-5)
    P._check_tolerance(r, fp32, bad, emul)
    assert set(r.out_of_tolerance) == {"w"}
    assert "further from fp32 than bf16 rounding explains" in P._verdict(r)


def test_a_tensor_without_gradient_signal_is_not_judged():
    fp32 = _pass(2.0, w=[0.0, 0.0], v=[1.0, 1.0])
    r = P.ProbeResult(sound=True, faster=True, verdict="")
    P._check_tolerance(r, fp32, _pass(2.0, w=[5.0, 5.0], v=[1.0, 1.0]), _pass(2.0, w=[0.0, 0.0], v=[1.0, 1.0]))
    assert not r.out_of_tolerance  # w has a zero fp32 gradient: no reference to be wrong against


# ----------------------------------------------------------------------------- injected faults


class _Fault(nn.Module):
    """Identity in fp32; under bf16 autocast (its input arrives as bf16 from a Linear) it misbehaves."""

    calls = [0]  # shared by the probe's copies of the network, like a kernel's global state

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.bfloat16:
            return x
        self.calls[0] += 1
        if self.kind == "inf":
            return x * float("inf")
        if self.kind == "noise":  # a different result on every call, like a racy kernel
            return x * (1 + 0.01 * self.calls[0])
        return x * 1.25  # wrong, but the same every time


def _mlp(kind: str | None) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 32), nn.ReLU()]
    if kind:
        layers.append(_Fault(kind))
    layers += [nn.Linear(32, 5)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("kind, field", [("inf", "finite"), ("noise", "repeatable")])
def test_probe_refuses_nonfinite_and_unrepeatable_bf16(kind, field):
    torch.manual_seed(0)
    r = P.probe_bf16(lambda: _mlp(kind), (3, 2, 4, 4), batch=4, channels_last=False)
    assert not r.sound and getattr(r, field) is False
    assert {"finite": "non-finite", "repeatable": "different results"}[field] in r.verdict


def test_probe_refuses_repeatable_but_wrong_bf16():
    r = P.probe_bf16(lambda: _mlp("scale"), (3, 2, 4, 4), batch=4, channels_last=False)
    assert not r.sound
    if r.repeatable and r.finite:  # this CPU's own bf16 GEMM passed the earlier checks: the fault must be named
        assert r.out_of_tolerance and "rounding explains" in r.verdict


def test_probe_leaves_the_callers_random_streams_alone():
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    P.probe_bf16(lambda: _mlp(None), (3, 2, 4, 4), batch=2, channels_last=False)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- decisions and cache


def _cpu(monkeypatch, text: str, machine: str, cap: str | None = None) -> None:
    info = parse_cpuinfo(text, machine=machine, onednn_cap=cap)
    monkeypatch.setattr(P, "cpu_info", lambda: info)


AMD = "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: sse4_1 avx avx2 avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16\n"


def _choose(requested: str, **kw):
    return P.choose_precision(requested, build=lambda: _mlp(None), model={"name": "mlp"}, input_shape=(3, 2, 4, 4),
                              batch=2, channels_last=False, log=None, **kw)


def test_fp32_is_never_probed_and_emulated_bf16_is_not_worth_probing(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(P, "probe_bf16", lambda *a, **k: pytest.fail("probed"))
    _cpu(monkeypatch, AMD, "x86_64")
    assert _choose("fp32").precision == "fp32"
    _cpu(monkeypatch, AMD, "x86_64", cap="AVX2")  # what an AVX2-only CPU runs
    c = _choose("auto")
    assert c.precision == "fp32" and "AVX2" in c.reason and "emulated" in c.reason
    _cpu(monkeypatch, "CPU implementer\t: 0x41\nFeatures\t: fp asimd\n", "aarch64")
    c = _choose("auto")
    assert c.precision == "fp32" and "aarch64" in c.reason


def _fake_probe(result: P.ProbeResult, calls: list[int]):
    def probe(*a, **k):
        calls.append(1)
        return result
    return probe


def test_auto_takes_bf16_only_when_sound_and_faster_and_caches_the_probe(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path))
    _cpu(monkeypatch, AMD, "x86_64")
    calls: list[int] = []
    good = P.ProbeResult(sound=True, faster=True, verdict="bf16 sound and faster")
    monkeypatch.setattr(P, "probe_bf16", _fake_probe(good, calls))
    first, second = _choose("auto"), _choose("auto")
    assert first.precision == second.precision == "bf16" and len(calls) == 1
    assert not first.cached and second.cached and "AMD EPYC" in first.cpu
    cached = P.list_cached_probes()
    assert len(cached) == 1 and cached[0]["key"]["torch"] == torch.__version__
    assert cached[0]["key"]["cpu"]["model"] == "AMD EPYC"
    for verdict in (P.ProbeResult(sound=False, faster=True, verdict="bf16 gave different results"),
                    P.ProbeResult(sound=True, faster=False, verdict="not faster")):
        monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / verdict.verdict.replace(" ", "_")))
        monkeypatch.setattr(P, "probe_bf16", _fake_probe(verdict, calls))
        c = _choose("auto")
        assert c.precision == "fp32" and verdict.verdict in c.reason


def test_forced_bf16_is_refused_only_when_deterministic_and_unrepeatable(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path))
    _cpu(monkeypatch, AMD, "x86_64")
    bad = P.ProbeResult(sound=False, faster=True, verdict="bf16 gave different results in two identical passes",
                        repeatable=False)
    calls: list[int] = []
    monkeypatch.setattr(P, "probe_bf16", _fake_probe(bad, calls))
    assert _choose("bf16").precision == "bf16" and not calls  # forced, not deterministic: not probed
    with pytest.raises(ValueError, match="deterministic: true with precision bf16.*different results"):
        _choose("bf16", deterministic=True)
    monkeypatch.setattr(P, "probe_bf16", lambda *a, **k: pytest.fail("the cached verdict should be used"))
    assert _choose("auto", deterministic=True).precision == "fp32"


# ----------------------------------------------------------------------------- fallback


def _data(n: int = 24) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 2, 4, 4, generator=g)
    y = torch.randint(0, 5, (n,), generator=g)
    gen = torch.Generator().manual_seed(1)
    train = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=4, generator=torch.Generator().manual_seed(2))
    return train, val


def _nan_in_bf16_at(step: int):
    """A cross-entropy that goes NaN at the given global bf16 step (logits arrive bf16 under autocast)."""
    seen = {"bf16": 0}

    def loss_fn(logits, labels, clips, extras):
        loss = cross_entropy_loss(logits, labels, clips, extras)
        if logits.dtype == torch.bfloat16:
            seen["bf16"] += 1
            if seen["bf16"] == step:
                return loss * float("nan")
        return loss
    return loss_fn


def _fit(tmp_path, name: str, precision: str, loss_fn, epochs: int = 3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(96, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 5))
    best = fit(model, *_data(), FitOptions(epochs=epochs, lr=0.01, precision=precision, channels_last=False, desc=name),
               loss_fn=loss_fn, on_best=lambda m, row: None, metrics_path=tmp_path / f"{name}.jsonl",
               resume=ResumeSpec(tmp_path / f"{name}.pt", "k"))
    rows = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    return model, best, rows


def test_nonfinite_bf16_in_the_first_epoch_rolls_back_and_ends_equal_to_fp32(tmp_path):
    # every bf16 step before the NaN is undone, weights, optimizer, RNG and loader order included,
    # so the run is the fp32 run bit for bit (fp32 repeats itself on any CPU)
    ref, _, ref_rows = _fit(tmp_path, "fp32", "fp32", cross_entropy_loss)
    got, best, rows = _fit(tmp_path, "fell", "bf16", _nan_in_bf16_at(3))
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), got.state_dict().values()))
    strip = ("clips_per_s", "epoch_s", "precision_fallback")
    assert [{k: v for k, v in r.items() if k not in strip} for r in rows] == \
        [{k: v for k, v in r.items() if k not in strip} for r in ref_rows]
    fb = rows[0]["precision_fallback"]
    assert (fb["from"], fb["to"], fb["epoch"]) == ("bf16", "fp32", 1) and "non-finite loss" in fb["reason"]
    assert [r["precision"] for r in rows] == ["fp32"] * 3 and best["final_precision"] == "fp32"


def test_fallback_in_a_later_epoch_keeps_earlier_epochs_and_resumes_in_fp32(tmp_path):
    steps_per_epoch = 6
    _, best, rows = _fit(tmp_path, "late", "bf16", _nan_in_bf16_at(steps_per_epoch + 2), epochs=2)
    assert [r["precision"] for r in rows] == ["bf16", "fp32"]
    assert "precision_fallback" not in rows[0] and rows[1]["precision_fallback"]["epoch"] == 2
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    assert best["precision_fallback"]["epoch"] == 2
    state, why = load_resume_state(ResumeSpec(tmp_path / "late.pt", "k"))
    assert why == "ok" and state["precision"] == "fp32" and state["precision_fallback"]["epoch"] == 2
    # a resumed run (here: one more epoch) goes on in fp32 although the options still say bf16
    _, _, more = _fit(tmp_path, "late", "bf16", _nan_in_bf16_at(10**9), epochs=3)
    assert [r["precision"] for r in more] == ["bf16", "fp32", "fp32"]


def test_nonfinite_fp32_still_stops_naming_the_step(tmp_path):
    def always_nan(logits, labels, clips, extras):
        return cross_entropy_loss(logits, labels, clips, extras) * float("nan")

    with pytest.raises(FloatingPointError, match="non-finite loss .* at epoch 1, step 0"):
        _fit(tmp_path, "stop", "fp32", always_nan)


# ----------------------------------------------------------------------------- bf16 where it is sound


def test_bf16_training_tracks_fp32_where_the_kernels_are_sound(tmp_path):
    """One epoch of a small MLP in bf16 against fp32 from the same start: each step's loss agrees to
    bf16 rounding. Per step the loss is a mean of cross-entropies of logits whose relative error is
    a few units of bf16 roundoff (two rounded GEMMs); over 6 steps of lr 0.01 the weights drift
    apart by about as much, so the epoch's mean loss agrees within 32u (~12%) of its magnitude."""
    probe = P.probe_bf16(lambda: _mlp(None), (3, 2, 4, 4), batch=4, channels_last=False)
    if not probe.sound:  # speed does not matter here, only whether the kernels compute bf16 correctly
        pytest.skip(f"bf16 kernels for this network are unsound here: {probe.verdict}")
    _, _, a = _fit(tmp_path, "a32", "fp32", cross_entropy_loss, epochs=1)
    _, _, b = _fit(tmp_path, "b16", "bf16", cross_entropy_loss, epochs=1)
    assert b[0]["precision"] == "bf16"
    assert abs(a[0]["train_loss"] - b[0]["train_loss"]) <= 32 * U * abs(a[0]["train_loss"])
