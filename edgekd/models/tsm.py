"""Temporal Shift Module networks (Lin et al. 2019): TSM-MobileNetV2, its online variant, TSM-R50.

A TSM network is a 2D image network run on every frame of the clip, ``(N, C, T, H, W)`` ->
``(N*T, C, H, W)``, made temporal at no cost in parameters or multiplies: inside the residual
branch of some blocks, before their first convolution, a fold of the channels (1/8 each way) is
shifted along time, so that block mixes each frame with its neighbours:

    channels [0, fold)        taken from frame t+1 (zeros at the last frame)
    channels [fold, 2*fold)   taken from frame t-1 (zeros at the first frame)
    channels [2*fold, C)      frame t's own

The shift is written with slices and ``torch.cat``, never as writes into slices: the TSM
authors' ``out[:, :-1, :fold] = x[:, 1:, :fold]`` exports (torch 2.13) as index arithmetic and
ScatterND (Range, Where, Expand, ScatterND), an in-place write into a view is at the mercy of the
tracer, while slicing exports as plain Slice and Concat, which every engine runs natively.
MMAction2's ``TemporalShift.shift`` computes the same thing the same way.

Module tree and parameter names are MMAction2's (``mmaction/models/backbones/mobilenet_v2_tsm.py``,
``mobilenet_v2.py``, ``resnet_tsm.py``, ``resnet.py``, ``heads/tsm_head.py``; mmcv's ConvModule
names its parts ``conv``, ``bn``, ``activate``), so an MMAction2 checkpoint's ``state_dict`` loads
with ``load_state_dict(strict=True)`` (``mmaction2_state_dict`` unwraps the file):

    TSM-MobileNetV2   backbone.conv1.{conv,bn}, backbone.layer1..layer7.<i>.conv.<j>.{conv,bn}, where
                      the shifted blocks' first conv is wrapped: layer2.1.conv.0.net.{conv,bn};
                      backbone.conv2.{conv,bn}; cls_head.fc_cls   (2,736,272 parameters at 400 classes)
    TSM-R50           backbone.conv1.{conv,bn}, backbone.layer1..layer4.<i>.conv1.conv.net (shifted),
                      .conv1.bn, .conv2.{conv,bn}, .conv3.{conv,bn}, .downsample.{conv,bn};
                      cls_head.fc_cls   (24,327,632 at 400 classes; 23,864,558 at Something-Something
                      V2's 174, which MMAction2's model zoo prints, for every dataset, as 23.87M)

Shifted blocks: in MobileNetV2 the inverted residuals that expand and keep their shape (10 of 17);
in ResNet-50 every bottleneck ("blockres"). The shift costs no multiplies: a clip costs T frames of
the 2D network (MobileNetV2 0.30 GMACs per 224x224 frame, 1.29 per 16x112x112 clip; ResNet-50
4.09 and 17.2). MMAction2's ``num_segments`` is ``input_size[0]`` here:
the network is built for one clip length T and refuses others (the shift reshapes by T).

Logits. Per-frame logits are ``fc_cls`` of each frame's pooled feature, ``(N, T, K)``
(``forward_frames``). Clip logits, what ``forward`` returns, are their mean over T (MMAction2's
AvgConsensus); they are computed as ``fc_cls`` of the mean feature, the same number by linearity
(up to float rounding), so the classifier sees one ``(N, D)`` feature per clip, the feature
distillation taps (``cls_head.consensus``). Dropout acts on that mean feature (MMAction2 drops per
frame); in eval mode there is no difference.

Online TSM (``tsm_mobilenetv2_online``; Lin et al.'s uni-directional shift) uses the past only: the
fold that would come from frame t+1 is zeros, the fold from frame t-1 is kept. It is the offline
network with every frame treated as a clip's last, so the parameter names (and an offline
MMAction2 checkpoint, as a starting point for fine-tuning) are unchanged. Because frame t then
depends on frames <= t only, the clip can be computed one frame at a time: ``TSMStep`` runs one
frame with the 10 shift buffers (the fold each shifted block received from the previous frame) as
explicit inputs and outputs, so it exports to ONNX with no state inside. A streaming runtime
feeds each frame with the previous call's buffers (zeros for the first frame) and predicts the
running mean of the last T per-frame logits (``StreamingTSM``): over the first T frames of a
stream that is exactly the online model's clip logits on those frames; later frames see up to 10
frames of history through the chained shifts, which a clip starting from zeros does not.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from edgekd.models import register_model
from edgekd.models.video_resnet import scaled_widths

SHIFT_DIV = 8  # 1/8 of the channels shifted each way
MOBILENET_V2_ARCH = (  # expand ratio, output channels, blocks, first stride (MMAction2 arch_settings)
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
MOBILENET_V2_STEM = 32
MOBILENET_V2_LAST = 1280
RESNET50_DEPTHS = (3, 4, 6, 3)
RESNET_PLANES = (64, 128, 256, 512)


def split_time(x: torch.Tensor, num_segments: int) -> torch.Tensor:
    """``(N*T, ...)`` -> ``(N, T, ...)``. A reshape with -1 for N, not ``unflatten``: exported with
    ``unflatten`` (then simplified by onnxsim), TSM's logits lost the dynamic batch axis (fixed at
    the trace batch of 2); the reshape keeps it."""
    return x.reshape((-1, num_segments) + tuple(x.shape[1:]))


def temporal_shift(x: torch.Tensor, num_segments: int, fold: int, online: bool = False) -> torch.Tensor:
    """Shift ``fold`` channels of ``x`` ``(N*T, C, H, W)`` from frame t+1 (zeros if ``online``) and
    the next ``fold`` from frame t-1, frame by frame within each clip of ``num_segments``."""
    x = split_time(x, num_segments)  # (N, T, C, H, W)
    zero = torch.zeros_like(x[:, :1, :fold])
    from_past = torch.cat((zero, x[:, :-1, fold:2 * fold]), dim=1)
    from_future = torch.zeros_like(x[:, :, :fold]) if online else torch.cat((x[:, 1:, :fold], zero), dim=1)
    return torch.cat((from_future, from_past, x[:, :, 2 * fold:]), dim=2).flatten(0, 1)


def temporal_shift_step(x: torch.Tensor, buffer: torch.Tensor, fold: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The online shift for one frame ``x`` ``(N, C, H, W)``: ``buffer`` is the previous frame's
    ``[fold, 2*fold)`` channels (zeros before the first frame). Returns the shifted frame and this
    frame's ``[fold, 2*fold)`` channels, the next call's buffer."""
    shifted = torch.cat((torch.zeros_like(x[:, :fold]), buffer, x[:, 2 * fold:]), dim=1)
    return shifted, x[:, fold:2 * fold]


class TemporalShift(nn.Module):
    """Shift, then ``net`` (MMAction2's wrapper: the wrapped module's parameters are under ``net``)."""

    def __init__(self, net: nn.Module, channels: int, num_segments: int, shift_div: int = SHIFT_DIV,
                 online: bool = False) -> None:
        super().__init__()
        self.fold = channels // shift_div
        if self.fold < 1:
            raise ValueError(f"temporal shift needs at least {shift_div} channels, got {channels} (raise width_mult)")
        self.net = net
        self.num_segments = num_segments
        self.online = online

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.fold, self.online))

    def step(self, x: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame of the online shift, then ``net``; returns the output and the new buffer."""
        shifted, buffer = temporal_shift_step(x, buffer, self.fold)
        return self.net(shifted), buffer


class ConvModule(nn.Module):
    """mmcv's ConvModule as MMAction2 builds it: conv (no bias), BN, optional activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, act: type[nn.Module] | None = nn.ReLU) -> None:
        super().__init__()
        self.conv: nn.Module = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                                         bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = act(inplace=True) if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


# --- MobileNetV2 -----------------------------------------------------------------------------


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
    """MMAction2's channel rounding: nearest multiple of ``divisor``, never 10% below ``value``."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new_value + divisor if new_value < min_ratio * value else new_value


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 project, residual when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = round(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvModule(in_channels, hidden, 1, act=nn.ReLU6))
        layers += [ConvModule(hidden, hidden, 3, stride, 1, groups=hidden, act=nn.ReLU6),
                   ConvModule(hidden, out_channels, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    @property
    def shifted(self) -> bool:
        return isinstance(self.conv[0], TemporalShift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)

    def step(self, x: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame through a shifted block (online shift); returns the output and new buffer."""
        out, buffer = self.conv[0].step(x, buffer)
        for layer in list(self.conv)[1:]:
            out = layer(out)
        return x + out, buffer


class MobileNetV2TSM(nn.Module):
    """MMAction2's MobileNetV2TSM backbone: ``(N*T, C, H, W)`` -> ``(N*T, 1280, H/32, W/32)``.

    ``widen_factor`` scales every width (rounded to multiples of 8) except the last 1x1 conv,
    which stays 1280 unless widened (MMAction2's and torchvision's rule).
    """

    def __init__(self, num_segments: int, *, widen_factor: float = 1.0, in_channels: int = 3,
                 shift_div: int = SHIFT_DIV, online: bool = False) -> None:
        super().__init__()
        if widen_factor <= 0:
            raise ValueError(f"width_mult must be > 0, got {widen_factor}")
        channels = make_divisible(MOBILENET_V2_STEM * widen_factor)
        self.conv1 = ConvModule(in_channels, channels, 3, 2, 1, act=nn.ReLU6)
        for i, (expand, width, blocks, stride) in enumerate(MOBILENET_V2_ARCH):
            out = make_divisible(width * widen_factor)
            layer = [InvertedResidual(channels if b == 0 else out, out, stride if b == 0 else 1, expand)
                     for b in range(blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            channels = out
        self.out_channels = int(MOBILENET_V2_LAST * widen_factor) if widen_factor > 1.0 else MOBILENET_V2_LAST
        self.conv2 = ConvModule(channels, self.out_channels, 1, act=nn.ReLU6)
        for block in self.blocks():  # MMAction2's make_temporal_shift
            if len(block.conv) == 3 and block.use_res_connect:
                conv = block.conv[0]
                block.conv[0] = TemporalShift(conv, conv.conv.in_channels, num_segments, shift_div, online)

    def blocks(self) -> list[InvertedResidual]:
        return [m for m in self.modules() if isinstance(m, InvertedResidual)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for i in range(len(MOBILENET_V2_ARCH)):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.conv2(x)

    def step(self, frame: torch.Tensor, buffers: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One frame ``(N, C, H, W)`` through the online network; ``buffers`` in block order."""
        blocks = self.blocks()
        expected = sum(block.shifted for block in blocks)
        if len(buffers) != expected:
            raise ValueError(f"expected {expected} shift buffers, got {len(buffers)}")
        x, pending, new = self.conv1(frame), iter(buffers), []
        for block in blocks:
            if block.shifted:
                x, buffer = block.step(x, next(pending))
                new.append(buffer)
            else:
                x = block(x)
        return self.conv2(x), new

    def buffer_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """``(fold, h, w)`` of each shift buffer for ``height`` x ``width`` frames, in block order."""

        def down(size: int) -> int:  # a 3x3 convolution with stride 2 and padding 1
            return (size - 1) // 2 + 1

        h, w, shapes = down(height), down(width), []
        for block in self.blocks():
            if block.shifted:
                shapes.append((block.conv[0].fold, h, w))
            if block.stride == 2:
                h, w = down(h), down(w)
        return shapes


# --- ResNet-50 -------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """MMAction2's ResNet bottleneck (``pytorch`` style: the 3x3 conv strides)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = ConvModule(inplanes, planes, 1)
        self.conv2 = ConvModule(planes, planes, 3, stride, 1)
        self.conv3 = ConvModule(planes, planes * self.expansion, 1, act=None)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNetTSM(nn.Module):
    """MMAction2's ResNetTSM (depth 50, shift "blockres": every block's conv1 sees shifted input)."""

    def __init__(self, num_segments: int, *, depths: Sequence[int] = RESNET50_DEPTHS, width_mult: float = 1.0,
                 in_channels: int = 3, shift_div: int = SHIFT_DIV, online: bool = False) -> None:
        super().__init__()
        stem, *_ = scaled_widths((RESNET_PLANES[0],), width_mult)
        planes = scaled_widths(RESNET_PLANES, width_mult)
        self.conv1 = ConvModule(in_channels, stem, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem
        for i, (depth, width) in enumerate(zip(depths, planes)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != width * Bottleneck.expansion:
                downsample = ConvModule(inplanes, width * Bottleneck.expansion, 1, stride, act=None)
            blocks = [Bottleneck(inplanes, width, stride, downsample)]
            inplanes = width * Bottleneck.expansion
            blocks += [Bottleneck(inplanes, width) for _ in range(1, depth)]
            for block in blocks:  # MMAction2 shifts every block when layer3 has < 23 blocks (R50)
                conv = block.conv1.conv
                block.conv1.conv = TemporalShift(conv, conv.in_channels, num_segments, shift_div, online)
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = inplanes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# --- the network -----------------------------------------------------------------------------


class TemporalMean(nn.Module):
    """MMAction2's AvgConsensus, on features: ``(N*T, D)`` -> ``(N, D)``, the mean over the T frames."""

    def __init__(self, num_segments: int) -> None:
        super().__init__()
        self.num_segments = num_segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return split_time(x, self.num_segments).mean(dim=1)


class TSMHead(nn.Module):
    """``cls_head``: per-frame global average pool, consensus (mean over T), dropout, ``fc_cls``."""

    def __init__(self, in_channels: int, num_classes: int, num_segments: int, dropout: float) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.consensus = TemporalMean(num_segments)
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.avg_pool(x).flatten(1)  # (N*T, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(self.dropout(self.consensus(self.frame_features(x))))


class TSM(nn.Module):
    """A 2D ``backbone`` run per frame plus ``cls_head``. Input ``(N, C, T, H, W)`` with T equal to
    ``num_segments``; output clip logits ``(N, K)`` (the mean of the per-frame logits)."""

    feature_path = "cls_head.consensus"  # output (N, D): the frames' mean pooled feature, the head's input
    head_path = "cls_head.fc_cls"

    def __init__(self, backbone: MobileNetV2TSM | ResNetTSM, num_classes: int, *, num_segments: int,
                 input_size: Sequence[int], dropout: float = 0.5, online: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_segments = num_segments
        self.input_size = tuple(int(s) for s in input_size)
        self.online = online
        self.backbone = backbone
        self.cls_head = TSMHead(backbone.out_channels, num_classes, num_segments, dropout)
        self.feature_dim = backbone.out_channels
        _init_weights(self)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` -> ``(N*T, C, H, W)``, frames of one clip consecutive (MMAction2's order)."""
        # checked in eager mode only: under tracing (ONNX export) the comparison would be a warning
        if not torch.jit.is_tracing() and (x.dim() != 5 or x.shape[2] != self.num_segments):
            raise ValueError(f"TSM built for clips of {self.num_segments} frames expects (N, C, "
                             f"{self.num_segments}, H, W), got {tuple(x.shape)}")
        return x.transpose(1, 2).flatten(0, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, D)`` mean of the frames' pooled features: what the classifier sees (before dropout)."""
        return self.cls_head.consensus(self.cls_head.frame_features(self.backbone(self._frames(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head.fc_cls(self.cls_head.dropout(self.forward_features(x)))

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``(N, T, K)``; their mean over T is ``forward(x)``."""
        logits = self.cls_head.fc_cls(self.cls_head.frame_features(self.backbone(self._frames(x))))
        return split_time(logits, self.num_segments)

    def step_module(self) -> TSMStep:
        """The per-frame step of this network, what export writes as the streaming graph (online
        TSM-MobileNetV2 only: ``TSMStep`` refuses the others)."""
        return TSMStep(self)


class TSMStep(nn.Module):
    """One frame of an online TSM-MobileNetV2, its shift buffers explicit inputs and outputs.

    ``forward(frame, *buffers) -> (frame_logits, *new_buffers)``: ``frame`` is ``(N, C, H, W)``,
    buffer i is ``(N, fold_i, h_i, w_i)`` (``buffer_shapes``), zeros before a stream's first frame.
    Nothing is kept between calls, so the module exports to ONNX as it is. Shares the parameters of
    the model it wraps.
    """

    def __init__(self, model: TSM) -> None:
        super().__init__()
        if not model.online or not isinstance(model.backbone, MobileNetV2TSM):
            raise ValueError("TSMStep needs an online TSM-MobileNetV2 (tsm_mobilenetv2_online): an offline "
                             "shift reads the next frame")
        self.model = model

    def forward(self, frame: torch.Tensor, *buffers: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, new = self.model.backbone.step(frame, buffers)
        head = self.model.cls_head
        return (head.fc_cls(head.frame_features(x)), *new)

    def buffer_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        return self.model.backbone.buffer_shapes(height, width)

    def initial_buffers(self, batch: int, height: int, width: int) -> list[torch.Tensor]:
        """Zero buffers for the first frame of ``batch`` streams of ``height`` x ``width`` frames."""
        device = self.model.cls_head.fc_cls.weight.device
        return [torch.zeros(batch, *shape, device=device) for shape in self.buffer_shapes(height, width)]

    @property
    def num_buffers(self) -> int:
        return sum(block.shifted for block in self.model.backbone.blocks())

    def input_names(self) -> list[str]:
        """ONNX names: ``frame``, then ``shift_in_0`` ... in buffer order."""
        return ["frame"] + [f"shift_in_{i}" for i in range(self.num_buffers)]

    def output_names(self) -> list[str]:
        """ONNX names: ``logits`` (this frame's), then ``shift_out_0`` ... in buffer order."""
        return ["logits"] + [f"shift_out_{i}" for i in range(self.num_buffers)]


class StreamingTSM:
    """Frame-by-frame prediction with a ``TSMStep``: carries the shift buffers from call to call and
    predicts the running mean of the last ``window`` per-frame logits (fewer at a stream's start).

    The reference for a streaming runtime (which does the same with the exported step graph); not
    an ``nn.Module`` because it holds state between calls by design.
    """

    def __init__(self, step: TSMStep, window: int, *, batch: int, height: int, width: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.step, self.window = step, window
        self.shape = (batch, height, width)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: zero buffers, empty window."""
        self.buffers = self.step.initial_buffers(*self.shape)
        self.recent: collections.deque[torch.Tensor] = collections.deque(maxlen=self.window)

    @torch.no_grad()
    def push(self, frame: torch.Tensor) -> torch.Tensor:
        """Feed one frame ``(N, C, H, W)``; returns the running-mean logits ``(N, K)``."""
        logits, *self.buffers = self.step(frame, *self.buffers)
        self.recent.append(logits)
        return torch.stack(tuple(self.recent)).mean(dim=0)


def mmaction2_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of an MMAction2 TSM checkpoint (the file's dict with ``state_dict`` and ``meta``,
    or a bare state dict) in this module's names, which are MMAction2's: only a DistributedDataParallel
    ``module.`` prefix is stripped. Load the result with ``load_state_dict(strict=True)``."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise TypeError(f"expected a state dict under 'state_dict', got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _init_weights(model: nn.Module) -> None:
    """MMAction2's initialisation: Kaiming (fan_out) convs, unit BN, N(0, 0.001) ``fc_cls``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.001)
            nn.init.zeros_(m.bias)


def _segments(input_size: Sequence[int] | None) -> tuple[int, int, int]:
    size = tuple(int(s) for s in (input_size or (8, 224, 224)))
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size must be (T, H, W) with positive sizes, got {size}")
    return size  # type: ignore[return-value]


def _mobilenet(num_classes: int, input_size: Sequence[int] | None, width_mult: float, dropout: float,
               in_channels: int, online: bool) -> TSM:
    size = _segments(input_size)
    backbone = MobileNetV2TSM(size[0], widen_factor=width_mult, in_channels=in_channels, online=online)
    return TSM(backbone, num_classes, num_segments=size[0], input_size=size, dropout=dropout, online=online)


# input_size[0] is the clip length T the shift is built for (MMAction2's num_segments, 8 there).
@register_model("tsm_mobilenetv2")
def tsm_mobilenetv2(num_classes: int, *, input_size: Sequence[int] | None = (8, 224, 224), width_mult: float = 1.0,
                    dropout: float = 0.5, in_channels: int = 3) -> TSM:
    """TSM-MobileNetV2 (MMAction2): 2.74M parameters at 400 classes, ~0.30 GMACs per 224x224 frame."""
    return _mobilenet(num_classes, input_size, width_mult, dropout, in_channels, online=False)


@register_model("tsm_mobilenetv2_online", streams=True)
def tsm_mobilenetv2_online(num_classes: int, *, input_size: Sequence[int] | None = (8, 224, 224),
                           width_mult: float = 1.0, dropout: float = 0.5, in_channels: int = 3) -> TSM:
    """TSM-MobileNetV2 shifting from the past only: streams frame by frame through ``TSMStep``."""
    return _mobilenet(num_classes, input_size, width_mult, dropout, in_channels, online=True)


@register_model("tsm_resnet50")
def tsm_resnet50(num_classes: int, *, input_size: Sequence[int] | None = (8, 224, 224), width_mult: float = 1.0,
                 dropout: float = 0.5, in_channels: int = 3) -> TSM:
    """TSM-R50 (MMAction2): 24.3M parameters at 400 classes, ~4.1 GMACs per 224x224 frame."""
    size = _segments(input_size)
    backbone = ResNetTSM(size[0], width_mult=width_mult, in_channels=in_channels)
    return TSM(backbone, num_classes, num_segments=size[0], input_size=size, dropout=dropout)
