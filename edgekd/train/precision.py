"""Training precision that is measured on this machine, not assumed from its CPU flags.

``precision: auto`` trains in bf16 only after a probe on the network about to train shows that the
bf16 kernels here are sound and faster. Why a probe: on an AMD EPYC with AVX512-BF16 (no AMX)
oneDNN's ``avx512_core_bf16`` kernels gave the last two C3D convolutions' weight gradients 0.55-0.67
relative error against fp32 where correct bf16 rounding gives 0.06-0.07, different values on
every call, and one run produced 1024 non-finite gradient values: the quickstart's teacher hit a
NaN loss at epoch 3. The same machine capped to ``ONEDNN_MAX_CPU_ISA=AVX2`` computed bf16 correctly
and repeatably, but 30x slower than fp32. Flags say neither.

The probe (:func:`probe_bf16`), on one fixed batch at the training shape, in train mode:

1. fp32 forward + backward twice: the reference gradients, their time, and whether fp32 repeats.
2. bf16 autocast forward + backward twice: every loss and gradient value must be finite, and the
   two passes must be bit-identical (same weights, same input, same dropout mask).
3. An *emulated* bf16 pass: fp32 arithmetic with rounding to bf16 exactly where autocast casts
   (inputs, weights and outputs of convolutions and linear layers, outputs of every other leaf
   module; gradients rounded at the same points on the way back). It measures how far from fp32
   correct bf16 arithmetic lands for this network and batch.
4. The tolerance, per parameter tensor and for the loss: ``|g_bf16 - g_fp32| <= 2 |g_emul - g_fp32|
   + 4 u |g_fp32|`` (norm-wise), ``u = 2^-8`` the unit roundoff of bf16's 8-bit significand. A
   correct kernel differs from the emulation only in summation order and fused rounding, so its
   error is of the same size as the emulation's; 2x covers that, and 4u covers tensors too small
   for the norm to average out. A kernel several times further from fp32 than rounding explains is
   computing something else.
5. Speed: the second bf16 pass must be faster than the second fp32 pass (first passes pay for
   kernel creation).

The result is cached per CPU (model, flags, effective oneDNN ISA), torch version, model, input
shape, batch, memory format and thread count, under :func:`edgekd.utils.paths.user_cache_dir`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekd.train.perf import to_memory_format
from edgekd.utils.atomic import write_json
from edgekd.utils.cpu import cpu_info
from edgekd.utils.hashing import stable_hash
from edgekd.utils.paths import user_cache_dir

__all__ = ["BF16_UNIT_ROUNDOFF", "PrecisionChoice", "ProbeResult", "choose_precision", "probe_bf16"]

BF16_UNIT_ROUNDOFF = 2.0**-8  # bf16 keeps 8 significant bits (7 stored + the implicit one)
ERROR_FACTOR = 2.0  # allowed native error, in multiples of the emulated (correct-rounding) error
ERROR_FLOOR_U = 4.0  # plus this many units of bf16 roundoff, relative to the fp32 value
PROBE_FORMAT = 1  # bump when the probe's procedure changes: cached results of an older probe are ignored
MAX_PROBE_BATCH = 8


@dataclass
class ProbeResult:
    """What the bf16 probe measured on this machine for one network and input."""

    sound: bool
    faster: bool
    verdict: str
    finite: bool = True
    nonfinite_values: int = 0
    repeatable: bool = True
    fp32_repeatable: bool = True
    unrepeatable: dict[str, float] = field(default_factory=dict)  # param -> max |delta| between bf16 passes
    worst: dict[str, Any] = field(default_factory=dict)  # the tensor closest to (or past) its tolerance
    out_of_tolerance: dict[str, dict[str, float]] = field(default_factory=dict)
    fp32_step_ms: float | None = None
    bf16_step_ms: float | None = None
    seconds: float = 0.0
    batch: int = 0
    input_shape: tuple[int, ...] = ()
    format: int = PROBE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeResult:
        known = {f for f in cls.__dataclass_fields__}
        out = cls(**{k: v for k, v in d.items() if k in known})
        out.input_shape = tuple(out.input_shape)
        return out


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a stage trains in, and why (logged, and recorded in the stage's outputs)."""

    precision: str  # fp32 | bf16
    requested: str  # auto | fp32 | bf16
    reason: str
    cpu: str = ""
    probe: dict[str, Any] | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return f"precision {self.precision} (asked: {self.requested}; {self.reason})"


class _RoundBF16(torch.autograd.Function):
    """Round to the nearest bf16 value and back to fp32, in both directions of autograd."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.to(torch.bfloat16).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return g.to(torch.bfloat16).to(g.dtype)


def _round(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return _RoundBF16.apply(x)
    if isinstance(x, tuple):
        return tuple(_round(v) for v in x)
    return x


_CASTING = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # autocast's lower-precision ops among layers


def emulate_bf16_autocast(model: nn.Module) -> nn.Module:
    """``model`` changed in place to compute in fp32 with bf16 rounding where autocast casts.

    Convolutions and linear layers round their input, weight and bias, and their output (fp32
    accumulation, bf16 result, as oneDNN's bf16 kernels do); every other leaf module rounds its
    output (it would compute on bf16 tensors). Gradients are rounded at the same points."""
    for module in model.modules():
        if next(module.children(), None) is not None:
            continue  # not a leaf
        if isinstance(module, _CASTING):
            module.forward = _emulated_forward(module)  # type: ignore[method-assign]
        else:
            module.register_forward_hook(lambda _m, _i, out: _round(out))
    return model


def _emulated_forward(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(module, nn.Linear):
        return lambda x: _round(F.linear(_round(x), _round(module.weight), _round(module.bias)))
    return lambda x: _round(module._conv_forward(_round(x), _round(module.weight), _round(module.bias)))  # type: ignore[operator]


@dataclass
class _Pass:
    loss: float
    grads: dict[str, torch.Tensor]
    ms: float


def _one_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, bf16: bool, channels_last: bool) -> _Pass:
    m = to_memory_format(model, channels_last)
    m.train()
    m.zero_grad(set_to_none=True)
    torch.manual_seed(1234)  # the same dropout masks in every pass
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = m(to_memory_format(x, channels_last))  # type: ignore[operator]
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    ms = (time.perf_counter() - start) * 1000.0
    grads = {n: p.grad.detach().float().clone() for n, p in m.named_parameters() if p.grad is not None}
    return _Pass(float(loss.detach()), grads, ms)


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).norm() / ref.norm().clamp_min(1e-30))


def probe_bf16(build: Callable[[], nn.Module], input_shape: tuple[int, ...], *, batch: int,
               channels_last: bool = True) -> ProbeResult:
    """Run the bf16 probe described in the module docstring on a fresh ``build()`` network.

    Runs inside ``torch.random.fork_rng``: the training run's random streams are left as they were,
    so a run that probes and one that reads the cached result train identically."""
    batch = max(1, min(batch, MAX_PROBE_BATCH))
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = build().float()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, *input_shape, generator=g)
        with torch.no_grad():
            was = base.training
            base.eval()
            num_classes = int(base(x[:1]).shape[1])
            base.train(was)
        y = torch.randint(0, num_classes, (batch,), generator=g)

        def run(bf16: bool) -> _Pass:
            return _one_pass(copy.deepcopy(base), x, y, bf16=bf16, channels_last=channels_last)

        f1, f2 = run(False), run(False)
        b1, b2 = run(True), run(True)
        result = ProbeResult(sound=True, faster=False, verdict="", batch=batch, input_shape=tuple(input_shape),
                             fp32_step_ms=round(f2.ms, 2), bf16_step_ms=round(b2.ms, 2))
        result.fp32_repeatable = f1.loss == f2.loss and all(torch.equal(f1.grads[n], f2.grads[n]) for n in f1.grads)
        values = [torch.tensor(p.loss) for p in (b1, b2)] + list(b1.grads.values()) + list(b2.grads.values())
        result.nonfinite_values = int(sum(int((~torch.isfinite(v)).sum()) for v in values))
        result.finite = result.nonfinite_values == 0
        result.unrepeatable = {n: float((b1.grads[n] - b2.grads[n]).abs().max()) for n in b1.grads
                               if not torch.equal(b1.grads[n], b2.grads[n])}
        if b1.loss != b2.loss and not (math.isnan(b1.loss) and math.isnan(b2.loss)):
            result.unrepeatable["loss"] = abs(b1.loss - b2.loss)
        result.repeatable = not result.unrepeatable
        if result.finite and result.repeatable:
            emul = _one_pass(emulate_bf16_autocast(copy.deepcopy(base)), x, y, bf16=False, channels_last=channels_last)
            _check_tolerance(result, f1, b1, emul)
    result.seconds = round(time.perf_counter() - start, 2)
    result.sound = result.finite and result.repeatable and not result.out_of_tolerance
    result.faster = result.bf16_step_ms is not None and result.fp32_step_ms is not None \
        and result.bf16_step_ms < result.fp32_step_ms
    result.verdict = _verdict(result)
    return result


def _check_tolerance(result: ProbeResult, fp32: _Pass, bf16: _Pass, emul: _Pass) -> None:
    u = BF16_UNIT_ROUNDOFF
    rows: dict[str, dict[str, float]] = {}
    for name, ref in fp32.grads.items():
        if float(ref.norm()) == 0.0 or name not in bf16.grads or name not in emul.grads:
            continue  # a parameter with no gradient signal on this batch says nothing
        native, emulated = _rel(bf16.grads[name], ref), _rel(emul.grads[name], ref)
        rows[name] = {"bf16_rel_err": native, "emulated_rel_err": emulated,
                      "tolerance": ERROR_FACTOR * emulated + ERROR_FLOOR_U * u}
    ref_loss = abs(fp32.loss) or 1.0
    native, emulated = abs(bf16.loss - fp32.loss) / ref_loss, abs(emul.loss - fp32.loss) / ref_loss
    rows["loss"] = {"bf16_rel_err": native, "emulated_rel_err": emulated,
                    "tolerance": ERROR_FACTOR * emulated + ERROR_FLOOR_U * u}
    result.out_of_tolerance = {n: {k: round(v, 5) for k, v in r.items()} for n, r in rows.items()
                               if r["bf16_rel_err"] > r["tolerance"]}
    worst = max(rows.items(), key=lambda kv: kv[1]["bf16_rel_err"] / kv[1]["tolerance"])
    result.worst = {"tensor": worst[0], **{k: round(v, 5) for k, v in worst[1].items()}}


def _verdict(r: ProbeResult) -> str:
    if not r.finite:
        return f"bf16 produced {r.nonfinite_values} non-finite loss/gradient values on the probe batch"
    if not r.repeatable:
        names = ", ".join(f"{n} (max |delta| {d:.2e})" for n, d in list(r.unrepeatable.items())[:4])
        return f"bf16 gave different results in two identical passes: {names}"
    if r.out_of_tolerance:
        name, row = next(iter(r.out_of_tolerance.items()))
        return (f"bf16 gradients of {len(r.out_of_tolerance)} tensor(s) are further from fp32 than bf16 rounding "
                f"explains, e.g. {name}: relative error {row['bf16_rel_err']:.3g}, correct rounding gives "
                f"{row['emulated_rel_err']:.3g} (tolerance {row['tolerance']:.3g})")
    speed = f"{r.bf16_step_ms:.0f} ms bf16 vs {r.fp32_step_ms:.0f} ms fp32 per step"
    if not r.faster:
        return f"bf16 is sound but not faster here ({speed})"
    return f"bf16 sound (finite, repeatable, worst tensor at {_ratio(r.worst)} of its tolerance) and faster ({speed})"


def _ratio(worst: dict[str, Any]) -> str:
    if not worst:
        return "n/a"
    return f"{worst['bf16_rel_err'] / worst['tolerance']:.0%}"


# ----------------------------------------------------------------------------- choosing


def _cache_path(key: dict[str, Any]) -> Path:
    return user_cache_dir() / "precision" / f"bf16-probe-{stable_hash(key)}.json"


def probe_key(model: dict[str, Any], input_shape: tuple[int, ...], batch: int, channels_last: bool) -> dict[str, Any]:
    """What a cached probe result is valid for."""
    return {"cpu": cpu_info().key(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "model": model, "input_shape": list(input_shape), "batch": max(1, min(batch, MAX_PROBE_BATCH)),
            "channels_last": channels_last, "format": PROBE_FORMAT}


def cached_probe(key: dict[str, Any]) -> ProbeResult | None:
    path = _cache_path(key)
    try:
        data = json.loads(path.read_text())
        if data.get("key") == json.loads(json.dumps(key)) and data["result"].get("format") == PROBE_FORMAT:
            return ProbeResult.from_dict(data["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def list_cached_probes() -> list[dict[str, Any]]:
    """Every cached probe result on this machine (what ``edgekd doctor`` shows)."""
    out = []
    for path in sorted((user_cache_dir() / "precision").glob("bf16-probe-*.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return out


def choose_precision(requested: str, *, build: Callable[[], nn.Module], model: dict[str, Any],
                     input_shape: tuple[int, ...], batch: int, channels_last: bool = True,
                     deterministic: bool = False, device: torch.device | None = None,
                     log: Callable[[str], None] | None = print) -> PrecisionChoice:
    """The precision to train ``build()``'s network in, with the reason.

    ``requested``: ``fp32`` (always fp32), ``bf16`` (forced; with ``deterministic`` the probe must
    show bf16 repeats itself, else this raises) or ``auto`` (bf16 only where the probe passes and is
    faster). ``model`` identifies the network for the cache (name and constructor arguments)."""
    if requested not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {requested!r}")
    cpu = cpu_info()
    cpu_name = f"{cpu.model or 'unknown CPU'} ({cpu.machine}, oneDNN ISA {cpu.onednn_isa or 'n/a'})"
    if requested == "fp32":
        return PrecisionChoice("fp32", requested, "the recipe asks for fp32", cpu_name)
    if device is not None and device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        if requested == "bf16" or ok:
            return PrecisionChoice("bf16" if ok or requested == "bf16" else "fp32", requested,
                                   f"CUDA device {torch.cuda.get_device_name(device)}; the CPU probe does not apply",
                                   cpu_name)
        return PrecisionChoice("fp32", requested, "CUDA device without bf16 support", cpu_name)
    worth, why = cpu.bf16_worth_probing()
    if requested == "auto" and not worth:
        return PrecisionChoice("fp32", requested, why, cpu_name)
    if requested == "bf16" and not deterministic:
        return PrecisionChoice("bf16", requested, "the recipe asks for bf16 (not probed)", cpu_name)
    key = probe_key(model, input_shape, batch, channels_last)
    result = cached_probe(key)
    cached = result is not None
    if result is None:
        if log is not None:
            log(f"[precision] probing bf16 training on {cpu_name} for {model.get('name', 'the model')} "
                f"at {list(input_shape)} x batch {key['batch']} (cached afterwards)")
        result = probe_bf16(build, input_shape, batch=batch, channels_last=channels_last)
        write_json(_cache_path(key), {"key": key, "result": result.to_dict(), "cpu": cpu_name,
                                      "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    probe = result.to_dict()
    if requested == "bf16":  # forced, deterministic: only repeatability can veto it
        if not (result.finite and result.repeatable):
            raise ValueError(f"deterministic: true with precision bf16 on {cpu_name}: {result.verdict}. "
                             "Use precision fp32 (or auto, which picks fp32 here).")
        return PrecisionChoice("bf16", requested, f"the recipe asks for bf16; probe: {result.verdict}", cpu_name,
                               probe, cached)
    if result.sound and result.faster:
        return PrecisionChoice("bf16", requested, f"probe: {result.verdict}", cpu_name, probe, cached)
    return PrecisionChoice("fp32", requested, f"probe: {result.verdict}", cpu_name, probe, cached)
