"""C3D teacher and student of Ullah & Munir 2023 (Tables 1 and 2), after Tran et al. 2015.

Both networks share one layout: eight 3x3x3 convolutions (padding 1) in five stages, max pooling
after each stage, then two fully connected layers and the classifier. Only the widths differ:

    teacher  conv 64-128-256-256-512-512-512-512, fc 4096-4096   (~78.4M params at 101 classes)
    student  conv 16-32-32-32-64-64-128-128,      fc 2048-1024   (~7.3M  params at 101 classes)

The original C3D pooling is kept: pool1 is (1,2,2) so early layers do not collapse time, pools 2-5
are (2,2,2), and pool5 pads H and W by one so a 16x112x112 clip leaves a 1x4x4 map (fc6 sees 8192
inputs for the teacher, 2048 for the student). An axis already down to one cell is not pooled
again, so short or small clips still work.
fc6's width is derived from the input size the model is built for, so any T/H/W works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from edgekd.models import register_model

TEACHER_WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)
TEACHER_FC = (4096, 4096)
STUDENT_WIDTHS = (16, 32, 32, 32, 64, 64, 128, 128)
STUDENT_FC = (2048, 1024)
# conv index after which each pool follows (conv1, conv2, conv3b, conv4b, conv5b)
_POOL_AFTER = (0, 1, 3, 5, 7)
_CONV_NAMES = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")


class C3D(nn.Module):
    """Plain C3D. Input ``(N, C, T, H, W)``, output logits ``(N, num_classes)``.

    ``batch_norm`` puts a BatchNorm3d after every convolution (the ``c3d_*_bn`` models): not the
    papers' network, but without normalisation C3D sits on the loss plateau at ln(K) for many
    epochs, which a 20-minute toy budget cannot afford.

    Layer names follow the public Sports-1M ports (conv1..conv5b, fc6, fc7, fc8) so those
    checkpoints map onto this module by name. ``in_channels`` is 3 for RGB, 2 for flow teachers.
    """

    feature_path = "relu7"  # output (N, fc7 width): fc7's activations, the head's input before dropout
    head_path = "fc8"

    def __init__(
        self,
        num_classes: int,
        *,
        widths: Sequence[int] = TEACHER_WIDTHS,
        fc: Sequence[int] = TEACHER_FC,
        in_channels: int = 3,
        input_size: Sequence[int] = (16, 112, 112),
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 8 or len(fc) != 2:
            raise ValueError(f"C3D needs 8 conv widths and 2 fc widths, got {list(widths)} and {list(fc)}")
        if len(input_size) != 3 or min(input_size) < 1:
            raise ValueError(f"input_size must be (T, H, W) with positive sizes, got {tuple(input_size)}")
        self.num_classes = num_classes
        self.input_size = tuple(int(s) for s in input_size)
        layers: dict[str, nn.Module] = {}
        prev, dims = in_channels, self.input_size
        for i, (name, width) in enumerate(zip(_CONV_NAMES, widths)):
            layers[name] = nn.Conv3d(prev, width, kernel_size=3, padding=1, bias=not batch_norm)
            if batch_norm:
                layers[f"bn_{name}"] = nn.BatchNorm3d(width)
            layers[f"relu_{name}"] = nn.ReLU(inplace=True)
            if i in _POOL_AFTER:
                stage = _POOL_AFTER.index(i) + 1
                layers[f"pool{stage}"], dims = _pool(stage, dims)
            prev = width
        self.features = nn.Sequential()
        for name, layer in layers.items():
            self.features.add_module(name, layer)
        # fc6's width from the pooled map size _pool computed (not a dry run: works on the meta device)
        self.flat_features = prev * dims[0] * dims[1] * dims[2]
        _init_conv(self.features)
        self.fc6 = nn.Linear(self.flat_features, fc[0])
        self.fc7 = nn.Linear(fc[0], fc[1])
        self.fc8 = nn.Linear(fc[1], num_classes)
        # one module per use (no shared ReLU/Dropout) so a forward hook on ``relu7`` fires once
        self.relu6, self.drop6 = nn.ReLU(inplace=True), nn.Dropout(dropout)
        self.relu7, self.drop7 = nn.ReLU(inplace=True), nn.Dropout(dropout)
        # He init for the fully connected layers too. With PyTorch's default Linear init this
        # 11-layer network without normalisation sat on a plateau at loss ln(K) for ~100 Adam
        # steps at lr 1e-4; with He init a 32-clip overfit reached 91% (vs 62%) in 60 steps.
        for layer in (self.fc6, self.fc7, self.fc8):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (fc7) activations before dropout: what feature-based distillation taps."""
        x = self.features(x).flatten(1)
        x = self.drop6(self.relu6(self.fc6(x)))
        return self.relu7(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.drop7(self.forward_features(x)))


def _pool(stage: int, dims: tuple[int, ...]) -> tuple[nn.MaxPool3d, tuple[int, ...]]:
    """The C3D pool of ``stage`` for an input of ``dims`` (T, H, W), and the output dims.

    Floor mode, as in the original C3D, because ceil mode is not portable: PyTorch drops a last
    window that starts in the padding, ONNX shape inference does not (at 32x40 fc6 then sees 2048
    inputs in PyTorch and 3072 in ONNX). An axis already collapsed to size 1 is not pooled any
    further (kernel 1), so short or small clips still work.
    """
    kernel = [1, 2, 2] if stage == 1 else [2, 2, 2]
    padding = [0, 1, 1] if stage == 5 else [0, 0, 0]
    for axis, size in enumerate(dims):
        if size + 2 * padding[axis] < kernel[axis] or size == 1:
            kernel[axis], padding[axis] = 1, 0
    out = tuple((d + 2 * p - k) // k + 1 for d, k, p in zip(dims, kernel, padding))
    pool = nn.MaxPool3d(kernel_size=tuple(kernel), stride=tuple(kernel), padding=tuple(padding))
    return pool, out


def _init_conv(module: nn.Module) -> None:
    """Kaiming (fan_out) init for the convolutions: C3D has no normalisation to rescue a poor init."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@register_model("c3d_teacher")
def c3d_teacher(num_classes: int, *, input_size: Sequence[int] | None = (16, 112, 112), width_mult: float = 1.0,
                dropout: float = 0.5, in_channels: int = 3) -> C3D:
    """Ullah & Munir Table 1 (the original C3D widths); ``width_mult`` scales every layer."""
    return C3D(num_classes, widths=_scale(TEACHER_WIDTHS, width_mult), fc=_scale(TEACHER_FC, width_mult),
               input_size=input_size or (16, 112, 112), dropout=dropout, in_channels=in_channels)


@register_model("c3d_student")
def c3d_student(num_classes: int, *, input_size: Sequence[int] | None = (16, 112, 112), width_mult: float = 1.0,
                dropout: float = 0.5, in_channels: int = 3) -> C3D:
    """Ullah & Munir Table 2: same depth as the teacher, about 11x fewer parameters."""
    return C3D(num_classes, widths=_scale(STUDENT_WIDTHS, width_mult), fc=_scale(STUDENT_FC, width_mult),
               input_size=input_size or (16, 112, 112), dropout=dropout, in_channels=in_channels)


def _scale(widths: Sequence[int], mult: float) -> tuple[int, ...]:
    if mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {mult}")
    return tuple(max(1, int(round(w * mult))) for w in widths)


@register_model("c3d_teacher_bn")
def c3d_teacher_bn(num_classes: int, *, input_size: Sequence[int] | None = (16, 112, 112), width_mult: float = 1.0,
                   dropout: float = 0.5, in_channels: int = 3) -> C3D:
    """``c3d_teacher`` with batch norm after each convolution (for small budgets; see ``C3D``)."""
    return C3D(num_classes, widths=_scale(TEACHER_WIDTHS, width_mult), fc=_scale(TEACHER_FC, width_mult),
               input_size=input_size or (16, 112, 112), dropout=dropout, in_channels=in_channels, batch_norm=True)


@register_model("c3d_student_bn")
def c3d_student_bn(num_classes: int, *, input_size: Sequence[int] | None = (16, 112, 112), width_mult: float = 1.0,
                   dropout: float = 0.5, in_channels: int = 3) -> C3D:
    """``c3d_student`` with batch norm after each convolution (for small budgets; see ``C3D``)."""
    return C3D(num_classes, widths=_scale(STUDENT_WIDTHS, width_mult), fc=_scale(STUDENT_FC, width_mult),
               input_size=input_size or (16, 112, 112), dropout=dropout, in_channels=in_channels, batch_norm=True)
