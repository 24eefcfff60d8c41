"""analyze(align=m): every selection keeps a multiple of m channels (or all) in each channel
group, so every width of the slim model is a multiple of m or the dense width."""

from __future__ import annotations

import pytest
import torch
from equivalence import make_zeroing_visible, rel_diff
from torch import nn

import trainonce
from trainonce.optim.budgets import Flops, GroupSparsity
from trainonce.subnet.construct import outputs


class SmallCNN(nn.Module):
    """stem, a residual block, a strided conv, GAP, fc: three channel groups of given widths."""

    def __init__(self, widths=(16, 16, 32)) -> None:
        super().__init__()
        a, b, c = widths
        self.stem, self.bn0 = nn.Conv2d(3, a, 3, padding=1, bias=False), nn.BatchNorm2d(a)
        self.conv1, self.bn1 = nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b)
        self.conv2, self.bn2 = nn.Conv2d(b, a, 3, padding=1, bias=False), nn.BatchNorm2d(a)
        self.conv3 = nn.Conv2d(a, c, 3, padding=1, stride=2, bias=False)
        self.bn3, self.fc = nn.BatchNorm2d(c), nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        r = torch.relu(self.bn1(self.conv1(h)))
        h = torch.relu(h + self.bn2(self.conv2(r)))
        h = torch.relu(self.bn3(self.conv3(h)))
        return self.fc(h.mean(dim=(2, 3)))


def widths(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter, by its name in the model (a slim traced program nests
    them under its own prefix)."""
    out = {}
    for name, p in model.named_parameters():
        out[name.split("model.", 1)[1] if name.startswith("program.") else name] = tuple(p.shape)
    return out


def assert_aligned(dense: nn.Module, slim: nn.Module, m: int) -> int:
    """Every slim width is the dense one or a multiple of ``m``; returns how many shrank."""
    before, after, shrunk = widths(dense), widths(slim), 0
    assert set(after) <= set(before)
    for name, w in after.items():
        for full, kept in zip(before[name], w):
            if kept != full:
                shrunk += 1
                assert kept % m == 0, f"{name}: {kept} of {full} channels, align={m}"
    return shrunk


def test_small_groups_are_kept_whole_and_bad_align_is_refused():
    torch.manual_seed(0)
    model = SmallCNN((4, 16, 24))
    x = torch.randn(2, 3, 8, 8)
    free = {g.name for g in trainonce.analyze(model, x).groups if g.prunable}
    space = trainonce.analyze(model, x, align=8)
    narrow = [g for g in space.groups if g.size < 8 and g.name in free]
    assert narrow and all(not g.prunable and "align=8" in g.reason for g in narrow)
    assert all(g.prunable for g in space.groups if g.size >= 8 and g.name in free)
    assert space.group_align().tolist() == [8 if g.prunable else 1 for g in space.groups]
    for bad in (0, 2.0, True, "8"):
        with pytest.raises(ValueError, match="align must be a whole number >= 1"):
            trainonce.analyze(model, x, align=bad)


@pytest.mark.parametrize("align", [4, 8])
def test_every_selection_is_aligned_on_a_cnn(align):
    torch.manual_seed(0)
    model = SmallCNN((20, 36, 64))
    x = torch.randn(4, 3, 8, 8)
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x, align=align)
    score = torch.rand(space.num_zigs, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(1))
    none = torch.zeros(space.num_zigs, dtype=torch.bool)
    for budget in (Flops(0.5), Flops(0.3), GroupSparsity(0.5)):
        chosen = budget.select(space, budget.value, score, none)
        for g in space.groups:
            kept = g.size - int(chosen[g.offset : g.offset + g.size].sum())
            assert kept == g.size or (kept % align == 0 and kept >= align), (budget, g.name)
    kept = space.flops(~Flops(0.5).select(space, 0.5, score, none)) / space.flops()
    assert 0.45 <= kept <= 0.5  # coarser units, still close to the budget from below
    dense = outputs(model, space)
    zero = space.zero_random_groups(0.5, seed=0)
    zeroed = outputs(model, space)
    assert rel_diff(dense, zeroed) > 1e-3  # the zeroing is visible
    slim = trainonce.construct_subnet(model, space)
    assert assert_aligned(model, slim, align) > 0 and bool(zero.any())


@pytest.mark.parametrize("name", [
    "hesso", *(pytest.param(n, marks=pytest.mark.slow)
               for n in ("hesso-cric", "dhspg", "hspg", "h2spg", "ato"))])
def test_training_ends_aligned(name):
    """The selections during a run (ATO: its freeze) keep every group aligned: the slim
    widths are too."""
    from trainonce.optim.registry import optimizer_class

    torch.manual_seed(0)
    model = SmallCNN((24, 40, 64))
    x = torch.randn(8, 3, 8, 8)
    space = trainonce.analyze(model, x, align=8)
    cls = optimizer_class(name)
    fixed = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    extra = {"loss_fn": lambda: model(fixed).square().mean()} if cls.needs_loss_fn else {}
    opt = cls(space, lr=0.05, target_flops=0.4, total_steps=30, **extra)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        xb = torch.randn(8, 3, 8, 8, generator=gen)
        loss = model(xb).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert opt.metrics()["flops_kept"] <= 0.4 + 1e-9
    slim = trainonce.construct_subnet(model, space)
    assert assert_aligned(model, slim, 8) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "densenet121", "vit_b_16"])
def test_torchvision_slim_widths_are_aligned(name):
    import torchvision

    kwargs = {"image_size": 64} if name.startswith("vit") else {}
    model = getattr(torchvision.models, name)(num_classes=10, **kwargs).eval()
    x = torch.randn(1, 3, 64, 64)
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x, align=8)
    dense = outputs(model, space)
    space.zero_random_groups(0.5, seed=0)
    assert rel_diff(dense, outputs(model, space)) > 1e-4
    slim = trainonce.construct_subnet(model, space)  # verified against the zeroed model
    assert assert_aligned(model, slim, 8) > 0
