"""`trainonce.analyze` hands the model back as it came: no tensors cached while tracing, every
module's ``training`` flag and every ``requires_grad`` as they were (issue: YOLO's Detect)."""

import copy

import torch
from equivalence import analyze_untouched
from handwritten import CASES
from torch import nn

import trainonce


class CachesGrid(nn.Module):
    """Like ultralytics' Detect: a grid made in forward and cached for the next call."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)
        self.shape = None
        self.grid = torch.empty(0)

    def forward(self, x):
        y = self.conv(x).relu()
        if self.shape != y.shape:
            self.grid = torch.arange(y.shape[-1], dtype=y.dtype).expand(y.shape[-2:])
            self.shape = y.shape
        return self.head(y) + self.grid


def test_a_forward_that_caches_tensors_runs_after_analysis_as_before():
    torch.manual_seed(0)
    model = CachesGrid()  # built, analysed, then trained: it never ran before the analysis
    reference = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 8)
    trainonce.analyze(model, x)
    assert model.shape is None and model.grid.numel() == 0  # the traced grid did not stay
    model.train()
    assert torch.equal(model(x), reference(x))


def test_mixed_training_flags_and_frozen_parameters_are_kept():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    model.train()
    model[1].eval()  # a frozen BatchNorm in a training model
    model[0].bias.requires_grad_(False)
    analyze_untouched(model, torch.randn(2, 3, 8, 8))
    assert [m.training for m in model] == [True, False, True, True] and model.training
    assert not model[0].bias.requires_grad and model[0].weight.requires_grad


def test_no_hand_written_case_is_changed_by_its_analysis():
    for cls, inputs in CASES.values():
        torch.manual_seed(0)
        model = cls()
        analyze_untouched(model, inputs)


def test_a_failed_trace_leaves_the_model_too():
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            self.seen = x
            return self.conv(x)[x.sum() > 0]  # data-dependent: export refuses it

    model = Fails()
    try:
        trainonce.analyze(model, torch.randn(1, 3, 4, 4))
    except trainonce.TraceError:
        pass
    assert not hasattr(model, "seen") and model.training


def test_construct_subnet_leaves_the_full_model_as_it_was():
    torch.manual_seed(0)
    model = CachesGrid()
    model.head.eval()  # mixed modes survive the checks' runs at other batch sizes too
    space = trainonce.analyze(model, torch.randn(2, 3, 8, 8))
    space.zero_random_groups(0.5, 0)
    trainonce.construct_subnet(model, space)
    assert model.shape is None and model.training and not model.head.training
