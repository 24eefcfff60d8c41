"""User model factories (``module:factory``) for the CLI tests: good, bad, diverging, recorded."""

import torch
from torch import nn


def tiny_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def tiny_dropout_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """tiny_cnn with dropout: its training draws from the global RNG at every step."""
    net = tiny_cnn(num_classes, in_channels)
    net.insert(5, nn.Dropout(0.2))
    return net


def not_a_model():
    return 42


class _NanGradProbe(nn.Module):
    """Adds 1e-3 * sqrt(|p|) with p starting at 0: finite outputs, but the gradient of p is
    0 * inf = NaN at once, and ``nan_to_num`` keeps the outputs (and the loss) finite after p
    turned NaN. A model that diverges without the loss showing it."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x + 1e-3 * torch.nan_to_num(self.p.abs().sqrt())


def nan_grad_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return nn.Sequential(tiny_cnn(num_classes, in_channels), _NanGradProbe())


CALLS = []  # names of the factories below, each time one is called


def recorded_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    CALLS.append("recorded_cnn")
    return tiny_cnn(num_classes, in_channels)


class _AttentionNet(nn.Module):
    """Conv stem, nn.MultiheadAttention over the pixels, linear head: its own forward cannot
    follow a cut of the attention's width, so the slim model is the traced program."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU())
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        seq = self.stem(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return self.head(out.mean(1))


def attention_net(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return _AttentionNet(num_classes, in_channels)


class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, as timm's ConvNeXt has it."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(
            4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


def convnext_like(num_classes: int = 10, in_channels: int = 3, depths=(2, 2, 6, 2),
                  dims=(8, 16, 24, 32)) -> nn.Module:
    """ConvNeXt-atto's layout (stem, 2-2-6-2 blocks, downsampling, head) with narrow widths:
    a graph of ConvNeXt's size (about 200 ops) that analyses in a second."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, dims[0], 4, stride=4), _LayerNorm2d(dims[0])]
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i:
            layers += [_LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, stride=2)]
        layers += [_ConvNeXtBlock(dim) for _ in range(depth)]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dims[-1]),
            nn.Linear(dims[-1], num_classes)]
    return nn.Sequential(*layers, *head)


class _ValueBranch(nn.Module):
    """Control flow on tensor values: torch.export cannot trace it (and prints its partial graph
    to stderr while failing)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            return y.mean((2, 3))
        return y.amax((2, 3))


def value_branch_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return _ValueBranch(in_channels)


class _Unruled(nn.Module):
    """An op the channel rules do not know (bessel_j0) after the second conv: analysis keeps
    those channels whole with a warning; the first conv's stay prunable."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        y = torch.special.bessel_j0(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(y.mean((2, 3)))


def unruled_op_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return _Unruled(num_classes, in_channels)
