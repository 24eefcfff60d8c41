"""The CLI's default alignment gives way where the target needs finer widths; a given --align
does not (analysis only, no training)."""

from __future__ import annotations

import pytest
import torch

from trainonce.cli.main import build_parser
from trainonce.cli.run import _config
from trainonce.cli.run_space import analyze_for_target
from trainonce.optim.budgets import Flops
from trainonce.optim.targets import Pool
from trainonce.zoo import build_model


def _cfg(tmp_path, *flags):
    args = build_parser().parse_args(["run", "--out", str(tmp_path / "r"), *flags])
    return _config(args)


def _space(cfg):
    model = build_model(cfg.model, 10, 1).model.eval()
    return analyze_for_target(cfg, model, torch.randn(1, 1, 28, 28))


@pytest.mark.parametrize("target, align", [(0.5, 8), (0.3, 8), (0.1, 4), (0.05, 4)])
def test_default_alignment_halves_until_the_target_is_reachable(tmp_path, target, align):
    cfg = _cfg(tmp_path, "--target-flops", str(target))
    space = _space(cfg)
    assert cfg.align == align  # recorded in config.json, so --resume analyses the same space
    assert Flops(target).reachable_bound(space, Pool.of(space)) <= target


def test_a_given_alignment_is_kept(tmp_path):
    cfg = _cfg(tmp_path, "--target-flops", "0.1", "--align", "8")
    _space(cfg)
    assert cfg.align == 8  # the optimizer then refuses the target, naming --align 1


@pytest.mark.parametrize("target, args", [(0.5, {}), (0.3, {}), (0.2, "extreme"),
                                          (0.05, "extreme")])
def test_default_recipe_by_budget(tmp_path, target, args):
    from trainonce.cli.setup import EXTREME_ARGS

    cfg = _cfg(tmp_path, "--target-flops", str(target))
    assert cfg.optimizer == "hspg"
    assert cfg.extra["optimizer_args"] == (EXTREME_ARGS if args == "extreme" else {})
    given = _cfg(tmp_path, "--target-flops", str(target), "--optimizer", "hspg")
    assert "optimizer_args" not in given.extra  # a named optimizer gets its own defaults


def test_extreme_recipe_reaches_the_optimizer(tmp_path):
    from trainonce.cli.setup import build_optimizer

    cfg = _cfg(tmp_path, "--target-flops", "0.1")
    space = _space(cfg)
    opt = build_optimizer(cfg, space, total_steps=500)
    assert opt.progressive and opt.spread == 1.0
    assert (opt.schedule.start, opt.schedule.end) == (50, 200)
