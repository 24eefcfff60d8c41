"""Small hand-written models, one per coupling pattern the analysis must get right."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups), nn.BatchNorm2d(cout),
                         nn.ReLU())


class ConcatSlice(nn.Module):
    """Two branches concatenated, then the result split again by slicing."""

    def __init__(self):
        super().__init__()
        self.a, self.b = cbr(3, 8), cbr(3, 6)
        self.c, self.d = cbr(8, 5), cbr(6, 5)
        self.head = nn.Linear(5, 4)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        z = self.c(y[:, :8]) + self.d(y[:, 8:])
        return self.head(z.mean((2, 3)))


class SplitChunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 12)
        self.b1, self.b2, self.b3 = cbr(4, 4), cbr(4, 4), cbr(4, 5)
        self.mix = cbr(12, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        # chunk: equal pieces, one removal unit per position; split [3, 5]: pieces cut apart
        a, b, c = self.stem(x).chunk(3, dim=1)
        p, q = torch.split(torch.cat([self.b1(a), self.b2(b)], 1), [3, 5], dim=1)
        y = self.mix(torch.cat([p, q + self.b3(c), c], 1))
        return self.head(y.mean((2, 3)))


class GroupedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.grouped = cbr(16, 24, groups=4)
        self.proj = cbr(24, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.proj(self.grouped(self.stem(x))).mean((2, 3)))


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = cbr(3, 12)
        self.dw = cbr(12, 12, groups=12)
        self.dw2 = nn.Conv2d(12, 24, 3, padding=1, groups=12)  # channel multiplier 2
        self.proj = cbr(24, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.proj(self.dw2(self.dw(self.expand(x)))).mean((2, 3)))


class SharedWeights(nn.Module):
    """The same conv applied twice, and an embedding tied to the output projection."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.shared = nn.Linear(16, 16)
        self.mid = nn.Linear(16, 24)
        self.back = nn.Linear(24, 16)
        self.out = nn.Linear(16, 20, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        h = self.embed(ids)
        h = torch.relu(self.shared(torch.relu(self.shared(h))))
        h = h + self.back(torch.relu(self.mid(h)))
        return self.out(h)


class FlattenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(cbr(3, 8), nn.MaxPool2d(2), cbr(8, 6))
        self.fc1 = nn.Linear(6 * 4 * 4, 10)
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(self.features(x), 1))))


class TransposeInstanceNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.norm1 = nn.InstanceNorm2d(8, affine=True)
        self.up = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1)
        self.norm2 = nn.InstanceNorm2d(6, affine=True)
        self.out = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        y = torch.relu(self.norm1(self.down(x)))
        return self.out(torch.relu(self.norm2(self.up(y))))


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.conv2(F.silu(self.gn(self.conv1(x)))).mean((2, 3)))


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = cbr(3, 16)
        self.fc1, self.fc2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.proj = cbr(16, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = self.conv(x)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return self.head(self.proj(y * s).mean((2, 3)))


class ChannelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 12)
        self.b = cbr(12, 12, groups=3)
        self.c = cbr(12, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = self.b(self.a(x))
        n, c, h, w = y.shape
        y = y.view(n, 3, c // 3, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        return self.head(self.c(y).mean((2, 3)))


class PixelShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8 * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.mid = nn.Conv2d(8, 6, 3, padding=1)
        self.unshuffle = nn.PixelUnshuffle(2)
        self.out = nn.Conv2d(24, 3, 1)

    def forward(self, x):
        y = torch.relu(self.mid(torch.relu(self.shuffle(self.conv(x)))))
        return self.out(self.unshuffle(y))


class LayerScaleBlock(nn.Module):
    """ConvNeXt-style: depthwise conv, channels-last MLP and a per-channel layer scale."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 3, padding=1)
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.gamma * self.fc2(F.gelu(self.fc1(y)))
        return self.head((x + y.permute(0, 3, 1, 2)).mean((2, 3)))


class MHA(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(dim, 32), nn.Linear(32, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = h + self.fc2(torch.relu(self.fc1(h)))
        return self.head(h.mean(1))


class MyLinear(nn.Linear):
    """A user's Linear subclass with its own forward."""

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) * 2.0


class CustomLinearNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = MyLinear(10, 20), MyLinear(20, 12), MyLinear(12, 3)

    def forward(self, x):
        return self.c(torch.tanh(self.b(torch.relu(self.a(x)))))


IMAGE = torch.randn(2, 3, 8, 8)
CASES = {
    "concat_slice": (ConcatSlice, IMAGE),
    "split_chunk": (SplitChunk, IMAGE),
    "grouped_conv": (GroupedConv, IMAGE),
    "depthwise": (Depthwise, IMAGE),
    "shared_and_tied": (SharedWeights, torch.randint(0, 20, (2, 5))),
    "flatten_linear": (FlattenLinear, IMAGE),
    "conv_transpose_instance_norm": (TransposeInstanceNorm, IMAGE),
    "group_norm": (GroupNormNet, IMAGE),
    "squeeze_excite": (SqueezeExcite, IMAGE),
    "channel_shuffle": (ChannelShuffle, IMAGE),
    "pixel_shuffle": (PixelShuffleNet, IMAGE),
    "layer_scale": (LayerScaleBlock, IMAGE),
    "multihead_attention": (MHA, torch.randn(2, 5, 6)),
    "custom_linear_subclass": (CustomLinearNet, torch.randn(2, 10)),
}
