"""3D-ResNeXt (Hara et al. 2018) with Hu et al.'s channel-excitation (CE) module or an SE block.

The backbone follows kenshohara/3D-ResNets-PyTorch ``models/resnext.py`` module for module and name
for name (``conv1``, ``bn1``, ``layer1.0.conv2.weight``, ``layer1.0.downsample.0.weight``, ``fc``),
so Hara's Kinetics checkpoints load once their ``module.`` prefix is stripped:

    conv1    7x7x7, 64, stride (1, 2, 2), padding 3          16x112x112 -> 16x56x56
    maxpool  3x3x3, stride 2, padding 1                       -> 8x28x28
    layer1-4 (Res2-Res5) ResNeXtBottleneck, cardinality 32, expansion 2, shortcut B (1x1x1 conv + BN)
             widths 256, 512, 1024, 2048; layers 2-4 stride 2    -> 1x4x4 at Res5
    avgpool, fc(2048 -> classes)

Hara pools with a fixed ``AvgPool3d`` sized for the training clip; adaptive pooling is used here
instead (no parameters, same result at the training size), so any clip size works.

Hu et al. (Front. Neurorobot. 2023, section 3.2) put an excitation module after each of Res2-Res5:
  CE: global average pool -> 1D convolution over the channel axis (k=3, no reduction, no bias)
      -> sigmoid -> rescale the channels. 3 parameters per module.
  SE: global average pool -> FC(C -> C/16) -> ReLU -> FC(C/16 -> C) -> sigmoid -> rescale.
They live under ``excite.res2`` ... ``excite.res5``, outside Hara's names, so a plain Hara
checkpoint still loads into an excited network (``new_module_prefixes`` tells the loader that
these weights are expected to be absent and stay freshly initialised).

Parameters (Hu Table 3 figures reproduced at 400 classes, the Kinetics head they fine-tune from):
ResNeXt-101 48.34M, +SE after Res2-5 49.04M, +CE after Res2-5 48.34M (see tests/test_models_zoo.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

from edgekd.models import register_model
from edgekd.models.video_resnet import scaled_widths

Excitation = Literal["none", "ce", "se"]
RES_STAGES = (2, 3, 4, 5)  # Hu's names for layer1..layer4
BASE_PLANES = (128, 256, 512, 1024)  # Hara's ``planes`` per stage (output = planes * expansion)


class ChannelExcitation(nn.Module):
    """Hu et al.'s CE module: channel weights from a k-tap 1D convolution over the pooled channels.

    Unlike SE there is no bottleneck: each channel's weight depends on its k neighbours through k
    shared parameters, so the module is almost free (3 parameters at k=3).
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"CE kernel_size must be odd and >= 1, got {kernel_size}")
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x).flatten(1).unsqueeze(1)  # (N, 1, C): channels become the 1D "sequence"
        eta = torch.sigmoid(self.conv(y)).squeeze(1)  # (N, C)
        return x * eta[:, :, None, None, None]


class SqueezeExcitation(nn.Module):
    """The SE block (Hu, Shen et al. 2018) with a C -> C/reduction -> C bottleneck."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eta = torch.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x).flatten(1)))))
        return x * eta[:, :, None, None, None]


class ResNeXtBottleneck(nn.Module):
    """1x1x1 -> grouped 3x3x3 (``cardinality`` groups) -> 1x1x1, output ``planes * 2`` channels."""

    expansion = 2

    def __init__(self, inplanes: int, planes: int, cardinality: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        mid_planes = cardinality * int(planes / 32)
        if mid_planes < 1:
            raise ValueError(f"ResNeXt stage with {planes} planes has no channels per group at cardinality "
                             f"{cardinality} (needs planes >= 32; raise width_mult)")
        self.conv1 = nn.Conv3d(inplanes, mid_planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid_planes)
        self.conv2 = nn.Conv3d(mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1, groups=cardinality,
                               bias=False)
        self.bn2 = nn.BatchNorm3d(mid_planes)
        self.conv3 = nn.Conv3d(mid_planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class ResNeXt3D(nn.Module):
    """Hara's 3D-ResNeXt with optional CE/SE modules after the chosen Res stages."""

    feature_path = "avgpool"  # output (N, 2048, 1, 1, 1) at width 1: flatten(1) is the head's input
    head_path = "fc"
    new_module_prefixes = ("excite.",)  # absent from Hara checkpoints by design

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int = 400,
        *,
        cardinality: int = 32,
        planes: Sequence[int] = BASE_PLANES,
        stem_width: int = 64,
        in_channels: int = 3,
        dropout: float = 0.0,
        excitation: Excitation = "none",
        excitation_stages: Sequence[int] = RES_STAGES,
        ce_kernel: int = 3,
        se_reduction: int = 16,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if excitation not in ("none", "ce", "se"):
            raise ValueError(f"excitation must be 'none', 'ce' or 'se', got {excitation!r}")
        bad = [s for s in excitation_stages if s not in RES_STAGES]
        if bad:
            raise ValueError(f"excitation_stages must be among Res stages {list(RES_STAGES)}, got {bad}")
        self.num_classes = num_classes
        self.inplanes = stem_width
        self.conv1 = nn.Conv3d(in_channels, stem_width, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3),
                               bias=False)
        self.bn1 = nn.BatchNorm3d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(3, 3, 3), stride=2, padding=1)
        self.layer1 = self._make_layer(planes[0], layers[0], cardinality)
        self.layer2 = self._make_layer(planes[1], layers[1], cardinality, stride=2)
        self.layer3 = self._make_layer(planes[2], layers[2], cardinality, stride=2)
        self.layer4 = self._make_layer(planes[3], layers[3], cardinality, stride=2)
        self.excite = nn.ModuleDict()
        if excitation != "none":
            for stage in sorted(set(excitation_stages)):
                channels = planes[stage - 2] * ResNeXtBottleneck.expansion
                self.excite[f"res{stage}"] = (ChannelExcitation(ce_kernel) if excitation == "ce"
                                              else SqueezeExcitation(channels, se_reduction))
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(planes[3] * ResNeXtBottleneck.expansion, num_classes)
        self.feature_dim = self.fc.in_features
        for m in self.modules():  # Hara's initialisation
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each block starts as the identity (see video_resnet.zero_last_bn)
            for m in self.modules():
                if isinstance(m, ResNeXtBottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def _make_layer(self, planes: int, blocks: int, cardinality: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        out = planes * ResNeXtBottleneck.expansion
        if stride != 1 or self.inplanes != out:  # shortcut type B
            downsample = nn.Sequential(nn.Conv3d(self.inplanes, out, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm3d(out))
        layers = [ResNeXtBottleneck(self.inplanes, planes, cardinality, stride, downsample)]
        self.inplanes = out
        layers += [ResNeXtBottleneck(self.inplanes, planes, cardinality) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _excite(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        key = f"res{stage}"
        return self.excite[key](x) if key in self.excite else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled ``(N, feature_dim)`` feature the classifier sees (before dropout)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage, layer in zip(RES_STAGES, (self.layer1, self.layer2, self.layer3, self.layer4)):
            x = self._excite(layer(x), stage)
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))


def _resnext(layers: Sequence[int], num_classes: int, width_mult: float, dropout: float, in_channels: int,
             excitation: Excitation, excitation_stages: Sequence[int], zero_init_residual: bool = False) -> ResNeXt3D:
    # width_mult scales the per-group width (the cardinality stays 32), e.g. 0.25 -> 1 channel per group
    return ResNeXt3D(layers, num_classes, planes=scaled_widths(BASE_PLANES, width_mult),
                     stem_width=scaled_widths((64,), width_mult)[0], in_channels=in_channels, dropout=dropout,
                     excitation=excitation, excitation_stages=tuple(excitation_stages),
                     zero_init_residual=zero_init_residual)


# input_size is accepted so every factory has one signature; adaptive pooling makes it unnecessary.
@register_model("resnext3d_50")
def resnext3d_50(num_classes: int, *, input_size: Sequence[int] | None = None, width_mult: float = 1.0,
                 dropout: float = 0.0, in_channels: int = 3, excitation: Excitation = "none",
                 excitation_stages: Sequence[int] = RES_STAGES, zero_init_residual: bool = False) -> ResNeXt3D:
    """3D-ResNeXt-50 (Hara): stages [3, 4, 6, 3]."""
    return _resnext([3, 4, 6, 3], num_classes, width_mult, dropout, in_channels, excitation, excitation_stages,
                    zero_init_residual)


@register_model("resnext3d_101")
def resnext3d_101(num_classes: int, *, input_size: Sequence[int] | None = None, width_mult: float = 1.0,
                  dropout: float = 0.0, in_channels: int = 3, excitation: Excitation = "none",
                  excitation_stages: Sequence[int] = RES_STAGES, zero_init_residual: bool = False) -> ResNeXt3D:
    """3D-ResNeXt-101 (Hara; Hu's backbone): stages [3, 4, 23, 3]."""
    return _resnext([3, 4, 23, 3], num_classes, width_mult, dropout, in_channels, excitation, excitation_stages,
                    zero_init_residual)


@register_model("resnext3d_101_ce")
def resnext3d_101_ce(num_classes: int, *, input_size: Sequence[int] | None = None, width_mult: float = 1.0,
                     dropout: float = 0.0, in_channels: int = 3,
                     excitation_stages: Sequence[int] = RES_STAGES, zero_init_residual: bool = False) -> ResNeXt3D:
    """Hu et al.'s network: 3D-ResNeXt-101 with a CE module after each of Res2-Res5."""
    return _resnext([3, 4, 23, 3], num_classes, width_mult, dropout, in_channels, "ce", excitation_stages,
                    zero_init_residual)


@register_model("resnext3d_101_se")
def resnext3d_101_se(num_classes: int, *, input_size: Sequence[int] | None = None, width_mult: float = 1.0,
                     dropout: float = 0.0, in_channels: int = 3,
                     excitation_stages: Sequence[int] = RES_STAGES, zero_init_residual: bool = False) -> ResNeXt3D:
    """Hu et al.'s SE baseline: 3D-ResNeXt-101 with an SE block (reduction 16) after each of Res2-Res5."""
    return _resnext([3, 4, 23, 3], num_classes, width_mult, dropout, in_channels, "se", excitation_stages,
                    zero_init_residual)


def _ce_at(stage: int) -> None:
    """Register ``resnext3d_101_ce_res{stage}``: one CE module after one stage (Hu et al. Table 2's
    placement study), so a recipe sweep over model names covers it."""

    def factory(num_classes: int, *, input_size: Sequence[int] | None = None, width_mult: float = 1.0,
                dropout: float = 0.0, in_channels: int = 3, zero_init_residual: bool = False) -> ResNeXt3D:
        return _resnext([3, 4, 23, 3], num_classes, width_mult, dropout, in_channels, "ce", (stage,),
                    zero_init_residual)

    factory.__name__ = factory.__qualname__ = f"resnext3d_101_ce_res{stage}"
    register_model(factory.__name__)(factory)


for _stage in RES_STAGES:
    _ce_at(_stage)
