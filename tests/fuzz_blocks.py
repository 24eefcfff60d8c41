"""Building blocks of the random architectures in `fuzz_models`: one small nn.Module per op
family. Each is built for an input state and any knobs (c, v, j), and records its output state.

A state is ``("img", C, H, W)`` for a (B, C, H, W) feature map or ``("seq", T, D)`` for (B, T, D)
tokens. Knobs are plain ints read modulo what a block needs, so any spec builds a valid model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

State = tuple


def divisors(n: int) -> list[int]:
    return [d for d in range(2, n + 1) if n % d == 0]


def act(v: int) -> nn.Module:
    return [nn.ReLU(), nn.GELU(), nn.SiLU(), nn.Identity()][v % 4]


def cbr(cin: int, cout: int, k: int = 3, groups: int = 1, bn: bool = True, v: int = 0):
    layers = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups)]
    return nn.Sequential(*layers, *([nn.BatchNorm2d(cout)] if bn else []), act(v))


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def to_map(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return t.transpose(1, 2).reshape(t.shape[0], -1, h, w)


class Block(nn.Module):
    """A random block; ``out`` is the state of its output."""

    out: State


# ----- image blocks --------------------------------------------------------------------------
class ConvBnAct(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.f = cbr(s[1], c, k=(1, 3)[v % 2], bn=bool(v & 2), v=v >> 2)
        self.out = ("img", c) + s[2:]

    def forward(self, x):
        return self.f(x)


class Residual(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.f = nn.Sequential(cbr(s[1], c), cbr(c, s[1], v=3))
        self.post = act(v)
        self.out = s

    def forward(self, x):
        return self.post(x + self.f(x))


class Branches(Block):
    """Two convs concatenated; with odd ``v`` the input itself is one branch (DenseNet)."""

    def __init__(self, s, c, v, j):
        super().__init__()
        c2 = 4 + j % 8
        self.a = cbr(s[1], c, k=1)
        self.b = None if v % 2 else cbr(s[1], c2)
        self.out = ("img", c + (s[1] if v % 2 else c2)) + s[2:]

    def forward(self, x):
        return torch.cat([self.a(x), x if self.b is None else self.b(x)], 1)


class ChunkSplit(Block):
    """Split channels (chunk / split sizes / slicing), convolve some parts, concatenate."""

    def __init__(self, s, c, v, j):
        super().__init__()
        C = s[1]
        self.v, self.a = v % 4, 1 + j % (C - 1)
        sizes = [t.numel() for t in torch.empty(C).chunk(2 + (self.v == 3))]
        if self.v in (1, 2):
            sizes = [self.a, C - self.a]
        self.convs = nn.ModuleList(cbr(n, n) for n in sizes[:-1])
        self.out = s

    def forward(self, x):
        if self.v in (0, 3):
            parts = list(x.chunk(2 + (self.v == 3), 1))
        elif self.v == 1:
            parts = list(torch.split(x, [self.a, x.shape[1] - self.a], 1))
        else:
            parts = [x[:, : self.a], x[:, self.a :]]
        return torch.cat([f(p) for f, p in zip(self.convs, parts)] + parts[len(self.convs):], 1)


class Depthwise(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        mult = 1 + v % 2
        self.dw = cbr(s[1], s[1] * mult, groups=s[1], v=v >> 1)
        self.pw = cbr(s[1] * mult, c, k=1)
        self.out = ("img", c) + s[2:]

    def forward(self, x):
        return self.pw(self.dw(x))


class Grouped(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        ds = divisors(s[1]) or [1]
        g = ds[v % len(ds)]  # the largest divisor, C itself, makes it depthwise
        cout = max(g, c // g * g)
        self.f = cbr(s[1], cout, groups=g)
        self.out = ("img", cout) + s[2:]

    def forward(self, x):
        return self.f(x)


class SqueezeExcite(Block):
    """x * sigmoid(fc(pool(x))), the gate broadcast in four spellings."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.c, self.v = s[1], v % 4
        self.fc1, self.fc2 = nn.Linear(s[1], max(2, c // 2)), nn.Linear(max(2, c // 2), s[1])
        self.out = s

    def forward(self, x):
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        if self.v == 0:
            return x * gate[:, :, None, None]
        if self.v == 1:
            return x * gate.view(x.shape[0], x.shape[1], 1, 1)
        if self.v == 2:
            return x * gate[:, :, None, None].expand_as(x)
        return x * gate.view(x.shape[0], self.c, 1, 1)  # a stale size: slim program path


class Shuffle(Block):
    """Grouped conv + channel shuffle (nn.ChannelShuffle, or by hand from x.shape / self.c)."""

    def __init__(self, s, c, v, j):
        super().__init__()
        ds = [d for d in divisors(s[1]) if d < s[1]] or [1]
        self.g, self.v, self.c = ds[j % len(ds)], v % 3, s[1]
        self.conv = cbr(s[1], s[1], groups=self.g)
        self.shuffle = nn.ChannelShuffle(self.g)
        self.out = s

    def forward(self, x):
        x = self.conv(x)
        if self.v == 0:
            return self.shuffle(x)
        b, c, h, w = x.shape
        c = c if self.v == 1 else self.c
        return x.view(b, self.g, c // self.g, h, w).transpose(1, 2).reshape(b, c, h, w)


class PixelShuffle(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.v = v % 2 if s[2] % 2 == 0 and s[3] % 2 == 0 else 0
        if self.v == 0:
            self.f = cbr(s[1], 4 * c)
        else:
            self.f = cbr(4 * s[1], c)
        self.out = ("img", c) + s[2:]

    def forward(self, x):
        if self.v == 0:
            return F.avg_pool2d(F.pixel_shuffle(self.f(x), 2), 2)
        return F.interpolate(self.f(F.pixel_unshuffle(x, 2)), scale_factor=2.0)


class Upsample(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.mode = ("nearest", "bilinear")[v % 2]
        self.conv = nn.Conv2d(s[1], c, 3, stride=2, padding=1)
        self.out = ("img", c) + s[2:]

    def forward(self, x):
        kw = {"align_corners": False} if self.mode == "bilinear" else {}
        return self.conv(F.interpolate(x, scale_factor=2.0, mode=self.mode, **kw))


class Pool(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.v = v % 4 if min(s[2:]) >= 6 else v % 2
        half = tuple(n // 2 for n in s[2:])
        self.out = s if self.v < 2 else s[:2] + half

    def forward(self, x):
        if self.v == 0:
            return F.avg_pool2d(x, 3, 1, 1)
        if self.v == 1:
            return F.max_pool2d(x, 3, 1, 1)
        if self.v == 2:
            return F.max_pool2d(x, 2)
        return F.adaptive_avg_pool2d(x, self.out[2:])


class ParamMul(Block):
    """Broadcast multiply (and add) by parameters shaped (1, C, 1, 1) or (C, 1, 1)."""

    def __init__(self, s, c, v, j):
        super().__init__()
        shape = (1, s[1], 1, 1) if v % 2 else (s[1], 1, 1)
        self.scale, self.shift = nn.Parameter(torch.randn(shape)), nn.Parameter(torch.randn(shape))
        self.out = s

    def forward(self, x):
        return x * self.scale + self.shift


class ConvNeXt(Block):
    """Depthwise conv, permute to channels-last, LayerNorm, MLP, layer scale, residual."""

    def __init__(self, s, c, v, j):
        super().__init__()
        C = s[1]
        self.dw = nn.Conv2d(C, C, 3, padding=1, groups=C)
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(C), nn.Linear(C, 2 * C), nn.Linear(2 * C, C)
        self.gamma = nn.Parameter(torch.randn(C))
        self.out = s

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.gamma * self.fc2(F.gelu(self.fc1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class Size1Slice(Block):
    """One channel read through a size-1 slice (slice / narrow / split(x, 1) / select) and
    used as a gate, an addend, or an extra channel."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.v, self.use, self.j = v % 4, (v // 4) % 3, j % s[1]
        self.conv = cbr(s[1], s[1], k=1)
        self.out = s if self.use < 2 else ("img", s[1] + 1) + s[2:]

    def forward(self, x):
        j = self.j
        if self.v == 0:
            t = x[:, j : j + 1]
        elif self.v == 1:
            t = x.narrow(1, j, 1)
        elif self.v == 2:
            t = torch.split(x, 1, 1)[j]
        else:
            t = x[:, j].unsqueeze(1)
        y = self.conv(x)
        if self.use == 0:
            return y * torch.sigmoid(t)
        return y + t if self.use == 1 else torch.cat([y, t], 1)


class IndexTable(Block):
    """A parameter table indexed by a tensor computed from channel values."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.v = v % 3
        self.table = nn.Parameter(torch.randn(2))
        self.emb = nn.Embedding(s[1], c) if self.v == 1 else None
        self.out = ("img", c) + s[2:] if self.v == 1 else s

    def forward(self, x):
        if self.v == 0:
            return self.table[(x > 0).long()]
        if self.v == 1:
            return self.emb(x.argmax(1)).permute(0, 3, 1, 2)
        return x * self.table[(x > 0).long()]


class Strided(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        C = s[1]
        self.v = v % 3 if C % 2 == 0 else v % 2
        self.conv = cbr((C + 1) // 2, c) if self.v == 1 else None
        self.out = ("img", c) + s[2:] if self.v == 1 else s[:1] + ((C // 2,) if self.v == 2
                                                                   else (C,)) + s[2:]

    def forward(self, x):
        if self.v == 0:
            return torch.cat([x[:, ::2], x[:, 1::2]], 1)
        if self.v == 1:
            return self.conv(x[:, ::2])
        return x[:, ::2] + x[:, 1::2]


class ConvT(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        ds = divisors(s[1])
        g = ds[j % len(ds)] if v % 2 and ds else 1
        cout = max(g, c // g * g)
        self.stride = 1 + (v // 2) % 2
        k, p = (3, 1) if self.stride == 1 else (2, 0)
        self.f = nn.ConvTranspose2d(s[1], cout, k, stride=self.stride, padding=p, groups=g)
        self.out = ("img", cout) + s[2:]

    def forward(self, x):
        y = self.f(x)
        return y if self.stride == 1 else F.avg_pool2d(y, 2)


class Glu(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.conv = nn.Conv2d(s[1], 2 * c, 1)
        self.glu = nn.GLU(1) if v % 2 else None
        self.out = ("img", c) + s[2:]

    def forward(self, x):
        y = self.conv(x)
        return self.glu(y) if self.glu is not None else F.glu(y, dim=1)


class PReLU(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.conv = nn.Conv2d(s[1], c, 1)
        self.act = nn.PReLU(c if v % 2 == 0 else 1)
        self.out = ("img", c) + s[2:]

    def forward(self, x):
        return self.act(self.conv(x))


class BoolMask(Block):
    """x[:, mask] with a constant boolean buffer, or with a mask computed from x (a
    data-dependent size: analyze must refuse it clearly)."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.v = v % 2
        mask = torch.tensor([(j >> (i % 5)) & 1 == 0 or i == 0 for i in range(s[1])])
        self.register_buffer("mask", mask)
        self.conv = cbr(int(mask.sum()), c, k=1) if self.v == 0 else None
        self.out = ("img", c) + s[2:] if self.v == 0 else s

    def forward(self, x):
        if self.v == 0:
            return self.conv(x[:, self.mask])
        chosen = x[:, x.mean((0, 2, 3)) >= x.mean()]  # never empty: max >= mean
        return x * chosen.mean(1, keepdim=True)


class ParamSlice(Block):
    """A weight sliced before use: conv2d(x, w[:c]) from a larger parameter."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.randn(c + 1 + j % 4, s[1], 3, 3) * 0.3)
        self.bias = nn.Parameter(torch.randn(c + 1 + j % 4))
        self.out = ("img", c) + s[2:]

    def forward(self, x):
        return F.relu(F.conv2d(x, self.weight[: self.c], self.bias[: self.c], padding=1))


class StaleGate(Block):
    """A gate computed through reshapes to the channel count stored at construction time."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.c = s[1]
        self.out = s

    def forward(self, x):
        b = x.shape[0]
        gate = x.reshape(b, self.c, -1).softmax(-1).amax(-1)
        return x * gate.view(b, self.c, 1, 1)


class ToSeq(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.v = v % 2
        self.out = ("seq", s[2] * s[3], s[1])

    def forward(self, x):
        if self.v == 0:
            return to_tokens(x)
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])
