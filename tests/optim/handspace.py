"""Hand-built search spaces for the unit tests (simpler to reason about than `trainonce.analyze`).

A channel group is declared by its producers (conv/linear + optional norm) and its consumers
(modules whose input dim 1 reads these channels, ``per_channel`` columns per channel, e.g. H*W
for a Linear after Flatten). FLOPs terms are exact MACs of every conv/linear.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from trainonce.space import Group, Member, SearchSpace
from trainonce.space.costs import CostModel, CostTerm


@dataclass
class ChannelSpec:
    name: str
    producers: list[tuple[str, str | None]]  # (conv or linear, norm or None)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (module, columns/channel)
    prunable: bool = True


def _groups(model: nn.Module, specs: list[ChannelSpec]) -> list[Group]:
    mods = dict(model.named_modules())
    groups = []
    for spec in specs:
        conv0 = mods[spec.producers[0][0]]
        n = conv0.weight.shape[0]
        ar = torch.arange(n).unsqueeze(1)
        members = []
        for prod, norm in spec.producers:
            for pname in ("weight", "bias"):
                if getattr(mods[prod], pname, None) is not None:
                    members.append(Member(f"{prod}.{pname}", 0, ar))
            if norm is not None:
                for pname in ("weight", "bias"):
                    if getattr(mods[norm], pname, None) is not None:
                        members.append(Member(f"{norm}.{pname}", 0, ar))
        for cons, k in spec.consumers:
            idx = torch.arange(n * k).view(n, k)
            members.append(Member(f"{cons}.weight", 1, idx))
        groups.append(Group(spec.name, n, members, prunable=spec.prunable))
    return groups


def flops_terms(model: nn.Module, space: SearchSpace, example: torch.Tensor) -> list[CostTerm]:
    """MACs of every Conv2d/Linear as ``unit * kept_out * kept_in``."""
    out_numel: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):

            def hook(mod, inp, out, name=name):
                out_numel[name] = out[0].numel() // out.shape[1]  # spatial size (batch 1)

            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()
        model(example[:1])
    for h in hooks:
        h.remove()
    terms = []
    slices = space.param_slices
    for name, m in model.named_modules():
        if name not in out_numel:
            continue
        w = m.weight
        unit = out_numel[name] * (w[0, 0].numel() if w.dim() > 2 else 1)
        dims = slices[f"{name}.weight"].dims if f"{name}.weight" in slices else {}
        vecs = [dims.get(d, torch.full((w.shape[d],), -1, dtype=torch.long)) for d in (0, 1)]
        terms.append(CostTerm.from_vectors("flops", unit, vecs))
    return terms


def build_space(model: nn.Module, specs: list[ChannelSpec], example: torch.Tensor) -> SearchSpace:
    tmp = SearchSpace(model, _groups(model, specs))
    terms = CostModel.from_params(model, tmp.param_slices).terms + flops_terms(model, tmp, example)
    return SearchSpace(model, _groups(model, specs), costs=CostModel(terms))


class SmallCNN(nn.Module):
    """ResNet-style CNN for 1-channel images: stem, one residual block, a conv, GAP, fc."""

    def __init__(self, widths=(16, 16, 32), num_classes: int = 10, in_ch: int = 1) -> None:
        super().__init__()
        a, b, c = widths
        self.stem = nn.Conv2d(in_ch, a, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(a)
        self.conv1 = nn.Conv2d(a, b, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(b)
        self.conv2 = nn.Conv2d(b, a, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(a)
        self.conv3 = nn.Conv2d(a, c, 3, padding=1, stride=2, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        r = torch.relu(self.bn1(self.conv1(h)))
        h = torch.relu(h + self.bn2(self.conv2(r)))
        h = torch.relu(self.bn3(self.conv3(h)))
        return self.fc(h.mean(dim=(2, 3)))


SMALLCNN_SPECS = [
    ChannelSpec("res", [("stem", "bn0"), ("conv2", "bn2")], [("conv1", 1), ("conv3", 1)]),
    ChannelSpec("mid", [("conv1", "bn1")], [("conv2", 1)]),
    ChannelSpec("out", [("conv3", "bn3")], [("fc", 1)]),
]


def smallcnn_space(model: SmallCNN, hw: int = 8, in_ch: int = 1) -> SearchSpace:
    return build_space(model, SMALLCNN_SPECS, torch.zeros(1, in_ch, hw, hw))


def slim_smallcnn(model: SmallCNN, space: SearchSpace, zero: torch.Tensor) -> SmallCNN:
    """The slim SmallCNN without the ZIGs in ``zero`` (exact for this architecture)."""
    keep = [torch.nonzero(~zero[g.offset : g.offset + g.size]).flatten() for g in space.groups]
    ka, kb, kc = keep
    slim = SmallCNN((len(ka), len(kb), len(kc)), model.fc.out_features, model.stem.in_channels)
    src = dict(model.named_modules())
    plan = {  # module -> (out index, in index)
        "stem": (ka, None),
        "bn0": (ka, None),
        "conv1": (kb, ka),
        "bn1": (kb, None),
        "conv2": (ka, kb),
        "bn2": (ka, None),
        "conv3": (kc, ka),
        "bn3": (kc, None),
        "fc": (None, kc),
    }
    with torch.no_grad():
        for name, m in slim.named_modules():
            if name not in plan:
                continue
            out_i, in_i = plan[name]
            for key, t in src[name].state_dict().items():
                if key == "num_batches_tracked":
                    getattr(m, key).copy_(t)
                    continue
                if out_i is not None and t.dim() >= 1:
                    t = t.index_select(0, out_i)
                if in_i is not None and t.dim() >= 2:
                    t = t.index_select(1, in_i)
                dict(m.named_parameters()).get(key, dict(m.named_buffers()).get(key)).copy_(t)
    return slim
