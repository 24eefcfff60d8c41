"""Test-only stand-ins for trainonce.analyze / HESSO / construct_subnet / save / load.

Used only while the real library is not on the branch: they handle the built-in ResNet8 (the
first conv of every block is prunable), enough to exercise the CLI's plumbing end to end.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainonce.space import CostModel, CostTerm, Group, Member, SearchSpace


def _blocks(model):
    return [
        (n, m) for n, m in model.named_modules() if n and hasattr(m, "conv1") and hasattr(m, "bn1")
    ]


def analyze(model, example_inputs, *, exclude=None):
    groups = []
    for name, b in _blocks(model):
        k = b.conv1.out_channels
        idx = torch.arange(k).unsqueeze(1)
        mem = [
            Member(f"{name}.conv1.weight", 0, idx),
            Member(f"{name}.bn1.weight", 0, idx),
            Member(f"{name}.bn1.bias", 0, idx),
            Member(f"{name}.conv2.weight", 1, idx),
        ]
        groups.append(Group(f"{name}.conv1", k, mem))
    groups.append(
        Group(
            "fc",
            model.fc.out_features,
            [Member("fc.weight", 0, torch.arange(model.fc.out_features)[:, None])],
            prunable=False,
            reason="model output",
        )
    )
    base = SearchSpace(model, groups)
    terms = list(base.costs.terms)
    for name, b in _blocks(model):
        vec = base.param_slices[f"{name}.conv1.weight"].dims[0]
        terms.append(CostTerm.from_vectors("flops", b.conv1.in_channels * 9 * 100, [vec]))
        terms.append(CostTerm.from_vectors("flops", b.conv2.out_channels * 9 * 100, [vec]))
    terms.append(CostTerm("flops", 1e5, [], [], []))
    return SearchSpace(model, groups, CostModel(terms))


class HESSO(torch.optim.SGD):
    def __init__(
        self,
        space,
        lr=0.1,
        variant="sgd",
        momentum=0.9,
        weight_decay=0.0,
        total_steps=10,
        target_flops=None,
        target_params=None,
        target_group_sparsity=None,
    ):
        super().__init__(
            space.model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
        self.space, self.total, self.t = space, total_steps, 0

    @torch.no_grad()
    def step(self, closure=None):
        super().step(closure)
        self.t += 1
        zero = self.space.zero_mask()
        if self.t >= self.total // 2 and not zero.any():
            sq = self.space.zig_sq_norms().cpu()
            for g in self.space.groups:  # the lowest-norm half of every prunable group
                if g.prunable and g.size > 1:
                    zero[g.offset + sq[g.zig_ids].argsort()[: g.size // 2]] = True
        if zero.any():
            self.space.set_zero(zero)

    def metrics(self):
        keep = ~self.space.zero_mask()
        return {
            "group_sparsity": float((~keep).sum()) / self.space.num_prunable_zigs,
            "flops_kept": self.space.flops(keep) / self.space.flops(),
            "params_kept": self.space.num_params(keep) / self.space.num_params(),
            "phase": "x",
        }


def _slim_blocks(model, sizes):
    for (_, b), k in zip(_blocks(model), sizes, strict=False):
        c = b.conv1
        b.conv1 = nn.Conv2d(c.in_channels, k, 3, c.stride, 1, bias=False)
        b.bn1 = nn.BatchNorm2d(k)
        b.conv2 = nn.Conv2d(k, b.conv2.out_channels, 3, 1, 1, bias=False)
    return model


def construct_subnet(model, space):
    keep = ~space.zero_mask()
    slim = copy.deepcopy(model)
    kept = [torch.nonzero(keep[g.zig_ids]).flatten() for g in space.groups if g.prunable]
    _slim_blocks(slim, [len(k) for k in kept])
    sd = {}
    for k, v in model.state_dict().items():
        for (name, _), idx in zip(_blocks(model), kept, strict=False):
            if k.startswith(f"{name}.conv1.") or k.startswith(f"{name}.bn1."):
                v = v.index_select(0, idx) if v.dim() else v
            elif k.startswith(f"{name}.conv2."):
                v = v.index_select(1, idx)
        sd[k] = v
    slim.load_state_dict(sd)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        if not torch.allclose(model.eval()(x), slim.eval()(x), atol=1e-5):
            raise RuntimeError("slim outputs differ")
    return slim


def save(slim, path):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sizes = [b.conv1.out_channels for _, b in _blocks(slim)]
    (path / "recipe.json").write_text(json.dumps({"sizes": sizes}))
    save_file(
        {k: v.contiguous() for k, v in slim.state_dict().items()}, str(path / "model.safetensors")
    )


def load(path, model_factory):
    path = Path(path)
    m = _slim_blocks(model_factory(), json.loads((path / "recipe.json").read_text())["sizes"])
    m.load_state_dict(load_file(str(path / "model.safetensors")))
    return m.eval()


def install():
    import trainonce

    for name in ("analyze", "HESSO", "construct_subnet", "save", "load"):
        if not hasattr(trainonce, name):
            setattr(trainonce, name, globals()[name])
