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
