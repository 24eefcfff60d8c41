"""ATO's controller network: fixed per-group embeddings -> bidirectional GRU -> one bias-free
linear head per group -> one logit per ZIG, and the Gumbel-sigmoid masks drawn from them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..space import SearchSpace


class Controller(nn.Module):
    """Logits over all ZIGs of ``space`` (non-prunable ZIGs get no head: always kept).

    Blocks are the prunable groups of the space, in order. Input: one fixed, seeded,
    orthogonal ``embed_dim`` vector per block (a buffer, not trained). The per-group heads
    ``Linear(2 * hidden -> group size, bias=False)`` are stored as the rows of one matrix
    (row ``z`` = ZIG ``z``'s output unit), so the heads are one vectorised product.
    """

    def __init__(
        self, space: SearchSpace, embed_dim: int = 64, hidden: int = 128, seed: int = 0
    ) -> None:
        super().__init__()
        blocks = [g for g in space.groups if g.prunable and g.size > 0]
        if not blocks:
            raise ValueError("the search space has no prunable group: nothing for ATO to choose")
        gen = torch.Generator().manual_seed(seed)
        embed = torch.empty(len(blocks), embed_dim)
        nn.init.orthogonal_(embed, generator=gen)
        self.register_buffer("embed", embed)
        zig = torch.cat([g.zig_ids for g in blocks])
        block = torch.cat([torch.full((g.size,), k) for k, g in enumerate(blocks)])
        self.register_buffer("zig", zig)
        self.register_buffer("block", block)
        self.num_zigs = space.num_zigs
        with torch.random.fork_rng(devices=[]):  # GRU init seeded, global RNG untouched
            torch.manual_seed(seed)
            self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(2 * hidden)
        bound = 1.0 / math.sqrt(2 * hidden)  # nn.Linear's default init for each head
        heads = torch.empty(zig.numel(), 2 * hidden).uniform_(-bound, bound, generator=gen)
        self.heads = nn.Parameter(heads)

    def forward(self) -> torch.Tensor:
        """Logits ``[num_zigs]`` (0 for ZIGs outside every block; masks keep those)."""
        h, _ = self.gru(self.embed.unsqueeze(0))
        h = torch.relu(self.norm(h.squeeze(0)))  # [blocks, 2 * hidden]
        per_zig = (self.heads * h[self.block]).sum(1)
        return torch.zeros(self.num_zigs, dtype=per_zig.dtype).index_put((self.zig,), per_zig)


def eval_mask(logits: torch.Tensor, bias: float, tau: float) -> torch.Tensor:
    """The deterministic 0/1 mask ``round(sigmoid((o + b) / tau))`` (bool)."""
    return torch.sigmoid((logits.detach() + bias) / tau) >= 0.5


def train_mask(
    logits: torch.Tensor, bias: float, tau: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(straight-through mask, soft mask): ``m = sigmoid((o + g + b) / tau)``, ``g`` ~
    Gumbel(0, 1) from ``gen``; the straight-through mask is exactly ``round(m)`` forward and
    has ``m``'s gradient (``h - m.detach() + m`` is exact in floating point for h = round(m))."""
    u = torch.rand(logits.shape, generator=gen, dtype=logits.dtype)
    e = (-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20)  # Exp(1) draws, never 0
    g = -torch.log(e)
    soft = torch.sigmoid((logits + g + bias) / tau)
    hard = (soft.detach() >= 0.5).to(soft.dtype)
    return hard - soft.detach() + soft, soft
