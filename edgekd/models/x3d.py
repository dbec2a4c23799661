"""X3D (Feichtenhofer 2020): X3D-XS, X3D-S and X3D-M, with PyTorchVideo's parameter names.

Written after pytorchvideo's ``models/x3d.py`` (``create_x3d``; pytorchvideo cannot be installed
here) with the *same module tree and parameter names*, so the published Kinetics-400 checkpoints
(``X3D_XS.pyth`` ... ``X3D_M.pyth``, whose ``model_state`` pytorchvideo's hub loads strictly into
``create_x3d``) load with ``load_state_dict(strict=True)``:

    blocks.0          stem: 1x3x3 conv (stride 1,2,2) -> depthwise 5x1x1 conv -> BN -> ReLU
    blocks.1-4        four ResStages of 3, 5, 11, 7 ResBlocks (depth factor 2.2 on 1, 2, 5, 3);
                      widths 24, 48, 96, 192, inner 54, 108, 216, 432 (2.25x); the first block of
                      each stage strides (1, 2, 2); every other block (the 1st, 3rd, ...) has SE
    blocks.5          head: 1x1x1 conv 192 -> 432, BN, ReLU, global pool, 1x1x1 conv 432 -> 2048,
                      ReLU, dropout, ``proj`` (Linear 2048 -> classes)

A ResBlock is ``branch1`` (1x1x1 conv shortcut, plus BN only when the width changes) + ``branch2``
(1x1x1 conv_a -> BN -> ReLU -> depthwise 3x3x3 conv_b -> BN -> SE -> Swish -> 1x1x1 conv_c -> BN),
then ReLU. Three pytorchvideo quirks are kept because the checkpoints depend on them:

- the stem's names are swapped: ``conv.conv_t`` is the *spatial* 1x3x3 convolution and
  ``conv.conv_xy`` the *temporal* depthwise 5x1x1 one (``create_x3d_stem`` passes
  ``conv_t=conv_xy_module``); the forward order is spatial, then temporal, as in the paper;
- SE lives inside ``norm_b`` (``norm_b.0`` is the BN, ``norm_b.1.block.0`` / ``.block.2`` are
  fvcore's SE convolutions); blocks without SE have an ``nn.Identity`` there (no parameters);
- stage 1's first block has a shortcut convolution (it strides) but no shortcut BN (the width
  does not change), so ``blocks.1.res_blocks.0.branch1_norm`` does not exist.

X3D-XS, -S and -M are one network (3,794,274 parameters at 400 classes: pytorchvideo's model zoo's
3.79M); they differ only in the clip they were trained on, 4x160x160, 13x160x160 and 16x224x224
(0.61, 1.96 and 4.73 GMACs: the paper's 0.60, 1.96, 4.73 GFLOPs; 1.26 GMACs at 16x112x112). pytorchvideo
pools the head with a fixed ``AvgPool3d`` sized for that clip; adaptive pooling is used here
(no parameters, the same result at the training size), so one module serves every input size.
Swish is ``nn.SiLU`` (the same function, x * sigmoid(x)): a plain module with PyTorch's own kernel,
exported as Sigmoid and Mul, where pytorchvideo's ``Swish`` is a custom autograd Function that
export has to inline (torch 2.13's exporter does; nothing depends on it here).

Additions that change no parameter name: ``in_channels`` (2 for flow), ``width_mult`` (multiplies
X3D's width factor 2.0; widths keep pytorchvideo's rounding to multiples of 8, at least 8), and
``zero_init_residual`` (pytorchvideo always zeroes each block's last BN; here it is asked for, as
for the other families, so that a recipe's default is the same for every model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from edgekd.models import register_model
from edgekd.models.video_resnet import init_weights

STEM_DIM_IN = 12  # pytorchvideo ``stem_dim_in``: stage widths 12, 24, 48, 96 before the width factor
WIDTH_FACTOR = 2.0  # X3D's gamma_w expansion
DEPTH_FACTOR = 2.2  # X3D-XS/S/M's gamma_d (X3D-L uses 5.0)
BOTTLENECK_FACTOR = 2.25  # inner (depthwise) width = 2.25 x the block's output width
SE_RATIO = 0.0625
HEAD_DIM = 2048
BASE_DEPTHS = (1, 2, 5, 3)
STEM_TEMPORAL_KERNEL = 5


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """pytorchvideo's ``round_width``: ``width * multiplier`` to a multiple of ``divisor`` (at least
    ``min_width``), rounded up a step when plain rounding would lose more than 10%."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    """pytorchvideo's ``round_repeats``: blocks per stage times the depth factor, rounded up."""
    return math.ceil(multiplier * repeats)


class Conv2plus1d(nn.Module):
    """The stem's factorised convolution, with pytorchvideo's (swapped) names; see the module doc."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_t = nn.Conv3d(in_channels, out_channels, kernel_size=(1, 3, 3), stride=(1, 2, 2),
                                padding=(0, 1, 1), bias=False)  # spatial, despite the name
        k = STEM_TEMPORAL_KERNEL
        self.conv_xy = nn.Conv3d(out_channels, out_channels, kernel_size=(k, 1, 1), padding=(k // 2, 0, 0),
                                 groups=out_channels, bias=False)  # temporal depthwise, despite the name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_xy(self.conv_t(x))


class X3DStem(nn.Module):
    """``blocks.0``: factorised 5x3x3 convolution (spatial stride 2), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv2plus1d(in_channels, out_channels)
        self.norm = nn.BatchNorm3d(out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class SqueezeExcitation3d(nn.Module):
    """fvcore's SE (``block.0`` reduce, ``block.2`` expand, both 1x1x1 convs with bias): channel
    weights from the clip's mean activation."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, kernel_size=1, bias=True),
            nn.ReLU(),
            nn.Conv3d(reduced, channels, kernel_size=1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class X3DBottleneck(nn.Module):
    """``branch2``: 1x1x1 -> depthwise 3x3x3 (+SE) -> 1x1x1, with BN after each convolution."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: tuple[int, int, int], se: bool) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, kernel_size=3, stride=stride, padding=1, groups=dim_inner,
                                bias=False)
        excite = SqueezeExcitation3d(dim_inner, round_width(dim_inner, SE_RATIO)) if se else nn.Identity()
        self.norm_b = nn.Sequential(nn.BatchNorm3d(dim_inner), excite)
        self.act_b = nn.SiLU()  # Swish
        self.conv_c = nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """Shortcut (``branch1_conv``/``branch1_norm`` when needed) + bottleneck (``branch2``), ReLU."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: tuple[int, int, int], se: bool) -> None:
        super().__init__()
        # pytorchvideo's create_x3d_res_block: a conv when the shape changes, a BN only with the width
        self.branch1_conv = (nn.Conv3d(dim_in, dim_out, kernel_size=1, stride=stride, bias=False)
                             if dim_in != dim_out or math.prod(stride) > 1 else None)
        self.branch1_norm = nn.BatchNorm3d(dim_out) if dim_in != dim_out else None
        self.branch2 = X3DBottleneck(dim_in, dim_inner, dim_out, stride, se)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """``blocks.1`` ... ``blocks.4``: ``res_blocks``, the first one strided, SE on every other one."""

    def __init__(self, depth: int, dim_in: int, dim_inner: int, dim_out: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, (1, 2, 2) if i == 0 else (1, 1, 1),
                     se=i % 2 == 0)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class ProjectedPool(nn.Module):
    """``blocks.5.pool``: 1x1x1 conv + BN + ReLU, global average pool, 1x1x1 conv + ReLU.

    X3D's "lin5": the 2048-wide projection after pooling is what lets so narrow a network classify.
    """

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int) -> None:
        super().__init__()
        self.pre_conv = nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False)
        self.pre_norm = nn.BatchNorm3d(dim_inner)
        self.pre_act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.post_conv = nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)
        self.post_act = nn.ReLU()  # not in place: its output is the feature distillation taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.pre_act(self.pre_norm(self.pre_conv(x))))
        return self.post_act(self.post_conv(x))


class X3DHead(nn.Module):
    """``blocks.5``: projected pool, dropout, ``proj`` (the classifier)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.pool = ProjectedPool(dim_in, dim_inner, dim_out)
        self.dropout = nn.Dropout(dropout)
        # pytorchvideo applies proj to a channels-last (N, 1, 1, 1, C) map; on the flattened
        # (N, C) feature it is the same matrix product
        self.proj = nn.Linear(dim_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(self.pool(x).flatten(1)))


class X3D(nn.Module):
    """X3D: ``blocks`` = stem, four ResStages, head. Input ``(N, C, T, H, W)``, logits ``(N, K)``.

    Any T, H and W work (global pooling); H and W shrink by 32, T is never strided.
    """

    feature_path = "blocks.5.pool.post_act"  # output (N, 2048, 1, 1, 1): flatten(1) is the head's input
    head_path = "blocks.5.proj"

    def __init__(
        self,
        num_classes: int = 400,
        *,
        width_factor: float = WIDTH_FACTOR,
        depth_factor: float = DEPTH_FACTOR,
        head_dim: int = HEAD_DIM,
        in_channels: int = 3,
        dropout: float = 0.5,
        input_size: Sequence[int] = (13, 160, 160),
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if width_factor <= 0 or depth_factor <= 0:
            raise ValueError(f"X3D width and depth factors must be > 0, got {width_factor} and {depth_factor}")
        self.num_classes = num_classes
        self.input_size = tuple(int(s) for s in input_size)
        # create_x3d: stage widths 12, 24, 48, 96 (x2 per stage), each times the width factor
        stage_dims = [STEM_DIM_IN]
        for _ in range(3):
            stage_dims.append(round_width(stage_dims[-1], 2.0))
        dim_in = round_width(STEM_DIM_IN, width_factor)
        blocks: list[nn.Module] = [X3DStem(in_channels, dim_in)]
        for base_depth, stage_dim in zip(BASE_DEPTHS, stage_dims):
            dim_out = round_width(stage_dim, width_factor)
            dim_inner = int(BOTTLENECK_FACTOR * dim_out)
            blocks.append(ResStage(round_repeats(base_depth, depth_factor), dim_in, dim_inner, dim_out))
            dim_in = dim_out
        blocks.append(X3DHead(dim_in, dim_inner, head_dim, num_classes, dropout))
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = head_dim
        _init_weights(self, zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, projected ``(N, 2048)`` feature the classifier sees (before dropout)."""
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1].pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.blocks[-1]
        return head.proj(head.dropout(self.forward_features(x)))


def _init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """pytorchvideo's ``init_net_weights`` (torchvision's: ``video_resnet.init_weights``); the last
    BN of each bottleneck starts at zero only when asked (see the module docstring)."""
    init_weights(model)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, X3DBottleneck):
                nn.init.zeros_(m.norm_c.weight)


def _x3d(num_classes: int, input_size: Sequence[int] | None, default_size: tuple[int, int, int], width_mult: float,
         dropout: float, in_channels: int, zero_init_residual: bool) -> X3D:
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    return X3D(num_classes, width_factor=WIDTH_FACTOR * width_mult, head_dim=round_width(HEAD_DIM, width_mult),
               in_channels=in_channels, dropout=dropout, input_size=input_size or default_size,
               zero_init_residual=zero_init_residual)


# input_size is the clip each network was trained on (pytorchvideo's hub); the module pools
# globally, so it only records the size and any clip runs.
@register_model("x3d_xs")
def x3d_xs(num_classes: int, *, input_size: Sequence[int] | None = (4, 160, 160), width_mult: float = 1.0,
           dropout: float = 0.5, in_channels: int = 3, zero_init_residual: bool = False) -> X3D:
    """X3D-XS: 3.79M parameters at 400 classes, trained on 4x160x160 clips."""
    return _x3d(num_classes, input_size, (4, 160, 160), width_mult, dropout, in_channels, zero_init_residual)


@register_model("x3d_s")
def x3d_s(num_classes: int, *, input_size: Sequence[int] | None = (13, 160, 160), width_mult: float = 1.0,
          dropout: float = 0.5, in_channels: int = 3, zero_init_residual: bool = False) -> X3D:
    """X3D-S: X3D-XS's network, trained on 13x160x160 clips."""
    return _x3d(num_classes, input_size, (13, 160, 160), width_mult, dropout, in_channels, zero_init_residual)


@register_model("x3d_m")
def x3d_m(num_classes: int, *, input_size: Sequence[int] | None = (16, 224, 224), width_mult: float = 1.0,
          dropout: float = 0.5, in_channels: int = 3, zero_init_residual: bool = False) -> X3D:
    """X3D-M: X3D-XS's network, trained on 16x224x224 clips."""
    return _x3d(num_classes, input_size, (16, 224, 224), width_mult, dropout, in_channels, zero_init_residual)
