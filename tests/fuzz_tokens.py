"""Token and attention blocks, stems and heads for the random architectures in `fuzz_models`.

Attention blocks accept either state: a feature map is flattened to tokens and restored after a
residual. States and knobs are as in `fuzz_blocks`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fuzz_blocks import Block, act, cbr, divisors, to_map, to_tokens
from torch import nn


def _dim(s) -> int:
    return s[1] if s[0] == "img" else s[2]


class _TokenResidual(Block):
    """x + f(tokens of x), for a map or a sequence."""

    def __init__(self, s):
        super().__init__()
        self.out = s

    def forward(self, x):
        if x.dim() == 4:
            return x + to_map(self.mix(to_tokens(x)), x.shape[2], x.shape[3])
        return x + self.mix(x)


class Attention(_TokenResidual):
    """q/k/v projections, a head reshape, F.scaled_dot_product_attention, an output projection.
    v % 3: timm-style fused qkv; separate projections with view(B, N, -1, head_dim); sizes read
    from attributes the library does not know (stale after a cut: slim program path)."""

    def __init__(self, s, c, v, j):
        super().__init__(s)
        D = _dim(s)
        ds = [d for d in divisors(D) if d < D] or [1]
        self.num_heads = ds[j % len(ds)]
        self.head_dim = D // self.num_heads
        self.h, self.hd = self.num_heads, self.head_dim
        self.v, self.causal = v % 3, bool((v // 3) % 2)
        if self.v == 0:
            self.qkv = nn.Linear(D, 3 * D)
        else:
            self.q, self.k, self.vp = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.proj = nn.Linear(D, D)

    def mix(self, t):
        B, N, _ = t.shape
        if self.v == 0:
            qkv = self.qkv(t).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
        elif self.v == 1:
            q, k, v = (f(t).view(B, N, -1, self.hd).transpose(1, 2) for f in (self.q, self.k,
                                                                              self.vp))
        else:
            q, k, v = (f(t).reshape(B, N, self.h, self.hd).transpose(1, 2) for f in (
                self.q, self.k, self.vp))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(B, N, -1))


class MHA(_TokenResidual):
    def __init__(self, s, c, v, j):
        super().__init__(s)
        D = _dim(s)
        ds = [d for d in divisors(D) if d < D] or [1]
        self.attn = nn.MultiheadAttention(D, ds[j % len(ds)], batch_first=True)

    def mix(self, t):
        return self.attn(t, t, t, need_weights=False)[0]


# ----- sequence blocks ------------------------------------------------------------------------
class SeqLinear(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(s[2], c), act(v))
        self.out = ("seq", s[1], c)

    def forward(self, x):
        return self.f(x)


def _norm(v: int, d: int) -> nn.Module:
    return [nn.LayerNorm(d), nn.RMSNorm(d), nn.LayerNorm(d, elementwise_affine=False)][v % 3]


class Mlp(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        D = s[2]
        self.f = nn.Sequential(_norm(v, D), nn.Linear(D, 2 * c), act(v >> 2), nn.Linear(2 * c, D))
        self.out = s

    def forward(self, x):
        return x + self.f(x)


class Norm(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.f = _norm(v, s[2])
        self.out = s

    def forward(self, x):
        return self.f(x)


class PosEmbed(Block):
    """x + pos[:, :T] from a longer table (ViT-style), or a table of exactly T rows."""

    def __init__(self, s, c, v, j):
        super().__init__()
        rows = s[1] + (1 + j % 4 if v % 2 == 0 else 0)
        self.pos = nn.Parameter(torch.randn(1, rows, s[2]))
        self.out = s

    def forward(self, x):
        return x + self.pos[:, : x.shape[1]]


class SeqGlu(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.fc = nn.Linear(s[2], 2 * c)
        self.out = ("seq", s[1], c)

    def forward(self, x):
        return F.glu(self.fc(x), dim=-1)


class TokenMix(Block):
    """MLP-Mixer token mixing: a Linear over the sequence dim between two transposes."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.mix = nn.Linear(s[1], s[1])
        self.out = s

    def forward(self, x):
        return x + self.mix(x.transpose(1, 2)).transpose(1, 2)


class SeqParamMul(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.randn(s[2])), nn.Parameter(torch.randn(s[2]))
        self.out = s

    def forward(self, x):
        return x * self.gamma + self.beta


class SeqSize1(Block):
    """A feature read through a size-1 slice of the last dim, used as a gate or an addend."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.v, self.use, self.j = v % 3, (v // 3) % 2, j % s[2]
        self.fc = nn.Linear(s[2], s[2])
        self.out = s

    def forward(self, x):
        j = self.j
        if self.v == 0:
            t = x[..., j : j + 1]
        elif self.v == 1:
            t = x.narrow(-1, j, 1)
        else:
            t = torch.split(x, 1, -1)[j]
        y = self.fc(x)
        return y * torch.sigmoid(t) if self.use == 0 else y + t


class SeqParamSlice(Block):
    """F.linear(x, w[:c], b[:c]) from a larger weight."""

    def __init__(self, s, c, v, j):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.randn(c + 1 + j % 4, s[2]) * 0.3)
        self.bias = nn.Parameter(torch.randn(c + 1 + j % 4))
        self.out = ("seq", s[1], c)

    def forward(self, x):
        return F.linear(x, self.weight[: self.c], self.bias[: self.c])


class SeqConv(Block):
    def __init__(self, s, c, v, j):
        super().__init__()
        self.conv = nn.Conv1d(s[2], c, 3, padding=1)
        self.out = ("seq", s[1], c)

    def forward(self, x):
        return F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)


# ----- stems and heads ------------------------------------------------------------------------
class Stem(Block):
    """Input -> first state: a conv for images, an embedding for token ids, a Linear for
    float token features."""

    def __init__(self, inp, c: int, v: int):
        super().__init__()
        kind, shape = inp[0], inp[1]
        if kind == "img":
            self.f = cbr(shape[1], c, v=v)
            self.out = ("img", c) + tuple(shape[2:])
        elif kind == "ids":
            self.f = nn.Embedding(inp[2], c)
            self.out = ("seq", shape[1], c)
        else:
            self.f = nn.Linear(shape[2], c)
            self.out = ("seq", shape[1], c)

    def forward(self, x):
        return self.f(x)


class Head(nn.Module):
    """Pool + Linear, flatten + Linear, or a per-position output (1x1 conv / Linear)."""

    def __init__(self, s, v: int, classes: int = 3):
        super().__init__()
        self.img = s[0] == "img"
        n = 5 if self.img else 4
        self.v = v % n
        width = s[1] if self.img else s[2]
        flat = s[1] * s[2] * s[3] if self.img else s[1] * s[2]
        if self.img and self.v == 4:
            self.f = nn.Conv2d(width, classes, 1)
        else:
            self.f = nn.Linear(flat if self.v == 1 else width, classes)
        self.norm = nn.LayerNorm(width) if not self.img and self.v == 3 else None

    def forward(self, x):
        v = self.v
        if v == 1:
            return self.f(x.flatten(1))
        if self.img:
            if v == 4:
                return self.f(x)
            if v == 2:
                return self.f(F.adaptive_avg_pool2d(x, 1).flatten(1))
            return self.f(x.mean((2, 3)) if v == 0 else x.amax((2, 3)))
        if v == 3:
            return self.f(self.norm(x))
        return self.f(x.mean(1) if v == 0 else x[:, 0])
