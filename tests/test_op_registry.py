"""The op registry: every entry is a real op with a well-formed rule; users can add rules for
custom ops; a rule bug fails loudly under the suite's strict mode; worked examples (PReLU, GLU,
``.T``) are one entry each."""

from __future__ import annotations

import operator
import warnings

import pytest
import torch
import torch.nn.functional as F
from equivalence import check_slim, make_zeroing_visible
from torch import nn

import trainonce
from trainonce.graph import registry
from trainonce.graph.engine import Operand, couple
from trainonce.graph.labels import Labels


def test_every_entry_is_a_real_op_with_a_wellformed_rule():
    entries = registry.entries()
    assert len(entries) > 300
    for op, entry in entries.items():
        assert op is operator.getitem or callable(getattr(op, "overloads", None)), op
        if op is not operator.getitem:
            assert op.overloads(), f"{op} has no overloads"
        assert callable(entry.channels), op
        assert entry.resize is None or callable(entry.resize), op
        for m in entry.modules:
            assert issubclass(m.type, nn.Module), (op, m)
            assert callable(m.update) and (m.snapshot is None or callable(m.snapshot))


def test_names_that_are_no_op_fail():
    with pytest.raises(LookupError, match="zeros_like_"):
        registry.register_rule("zeros_like_", lambda rec, a, k, o: None)
    with pytest.raises(ValueError, match="already has a rule"):
        registry.register_rule(torch.ops.aten.relu, lambda rec, a, k, o: None)


def test_module_sizes_prefers_the_most_specific_type():
    class MyConv(nn.Conv2d):
        pass

    assert registry.module_sizes(MyConv(2, 3, 1)).type is nn.Conv2d
    assert registry.module_sizes(nn.PReLU(4)).type is nn.PReLU
    assert registry.module_sizes(nn.ReLU()) is None


@torch.library.custom_op("trainonce_test::scale", mutates_args=())
def _scale(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * w.view(1, -1, 1, 1)


@_scale.register_fake
def _(x, w):
    return torch.empty_like(x)


def _scale_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _scale_backward(ctx, g):
    x, w = ctx.saved_tensors
    return g * w.view(1, -1, 1, 1), (g * x).sum((0, 2, 3))


_scale.register_autograd(_scale_backward, setup_context=_scale_setup)


@torch.library.custom_op("trainonce_test::buggy", mutates_args=())
def _buggy(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@_buggy.register_fake
def _(x):
    return torch.empty_like(x)


class ScaledNet(nn.Module):
    def __init__(self, op=torch.ops.trainonce_test.scale):
        super().__init__()
        self.op = op
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.w = nn.Parameter(torch.rand(8) + 0.5)
        self.b = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.op(self.a(x), self.w)))


def _scale_rule(rec, args, kwargs, out):
    x, w = args
    return Labels(tuple(out), couple(rec, [Operand(x, "nchw"), Operand(w, "c")], "nchw"))


def test_custom_op_is_pinned_with_a_warning_until_a_rule_is_registered():
    model, x = ScaledNet(), torch.randn(2, 3, 6, 6)
    if registry.lookup(torch.ops.trainonce_test.scale) is None:
        with pytest.warns(UserWarning, match="no channel rule for scale.default in the top-level"):
            with pytest.raises(trainonce.NothingPrunableError):
                trainonce.analyze(model, x)
        trainonce.register_rule(torch.ops.trainonce_test.scale, _scale_rule)
    make_zeroing_visible(model, x)
    space, _ = check_slim(model, x)
    assert space.num_prunable_zigs == 8


def test_a_rule_bug_raises_in_strict_mode_and_pins_otherwise(monkeypatch):
    def bad(rec, args, kwargs, out):
        raise KeyError("oops")

    registry.register_rule(torch.ops.trainonce_test.buggy, bad, replace=True)
    model = ScaledNet(lambda x, w: torch.ops.trainonce_test.buggy(x) * w.view(1, -1, 1, 1))
    x = torch.randn(1, 3, 5, 5)
    with pytest.raises(KeyError, match="oops"):
        trainonce.analyze(model, x)
    monkeypatch.setenv(registry.STRICT_ENV, "0")
    with pytest.warns(UserWarning, match="the rule for buggy.default .* failed"):
        with pytest.raises(trainonce.NothingPrunableError):
            trainonce.analyze(model, x)

    def unsupported(rec, args, kwargs, out):
        raise registry.RuleError("this call form")

    monkeypatch.setenv(registry.STRICT_ENV, "1")
    registry.register_rule(torch.ops.trainonce_test.buggy, unsupported, replace=True)
    with pytest.warns(UserWarning, match="does not support this call"):
        with pytest.raises(trainonce.NothingPrunableError):
            trainonce.analyze(model, x)


def test_an_ops_joint_and_shape_facts_are_read_from_its_entry():
    aten = torch.ops.aten
    assert registry.joint(aten.add.Tensor).kind == "sum" and registry.joint(aten.add.Scalar) is None
    assert registry.joint(aten.add_.Tensor).inplace and not registry.joint(aten.add.Tensor).inplace
    assert {registry.joint(op).kind for op in (aten.cat.default, aten.concat.default)} == {"concat"}
    assert registry.joint(aten.mul.Tensor) is None and registry.joint(operator.getitem) is None
    assert registry.is_shape_op(aten.view.default) and registry.is_shape_op(aten.permute.default)
    assert not registry.is_shape_op(aten.relu.default) and not registry.is_shape_op(aten.t_.default)
    assert registry.is_metadata_assert(aten._assert_tensor_metadata.default)
    assert registry.is_ignored(aten.sym_size.int)
    assert not registry.is_metadata_assert(aten.sym_size.int)


@torch.library.custom_op("trainonce_test::double", mutates_args=())
def _double(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


@_double.register_fake
def _(x):
    return torch.empty_like(x)


class DoubledBranch(nn.Module):
    """``h + double(conv(h))``: the branch is removable only once ``double`` has a zero rule."""

    def __init__(self):
        super().__init__()
        self.stem, self.branch = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        h = self.stem(x)
        return h + torch.ops.trainonce_test.double(self.branch(h))


def test_a_zero_rule_is_registered_with_the_channel_rule():
    from trainonce.graph import rules, zeros

    model, x = DoubledBranch(), torch.randn(1, 3, 5, 5)
    trainonce.register_rule(torch.ops.trainonce_test.double, rules.first, replace=True)
    with pytest.raises(trainonce.NothingPrunableError):
        trainonce.analyze(model, x, mode="erase")  # never taken to be zero without a rule
    trainonce.register_rule(torch.ops.trainonce_test.double, rules.first, zero=zeros.first,
                            replace=True)
    space = trainonce.analyze(model, x, mode="erase")
    assert [g.name for g in space.groups if g.prunable] == ["branch"]
    assert registry.lookup(torch.ops.trainonce_test.double).zero is zeros.first


class PReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.act, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(self.act(self.a(x)))


class GLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(F.glu(self.a(x), dim=1))


class TransposedWeight(nn.Module):
    """``x @ W.T`` as Falcon and hand-written MLPs do (aten.numpy_T)."""

    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(6, 12), nn.Linear(12, 5, bias=False)

    def forward(self, x):
        return torch.relu(x @ self.up.weight.T + self.up.bias) @ self.down.weight.T


@pytest.mark.parametrize("make, shape, expected", [
    (PReLUNet, (2, 3, 6, 6), 8),
    (GLUNet, (2, 3, 6, 6), 8),  # 16 channels in pairs: j and j + 8 are one ZIG
    (TransposedWeight, (3, 6), 12),
])
def test_worked_examples_prune_exactly(make, shape, expected):
    model, x = make(), torch.randn(*shape)
    make_zeroing_visible(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no op of these models may lack a rule
        space = trainonce.analyze(model, x)
    assert space.num_prunable_zigs == expected
    check_slim(model, x)


def test_falcon_has_prunable_groups():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.FalconConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, new_decoder_architecture=False)
    model = transformers.FalconForCausalLM(cfg).eval()
    inputs = {"input_ids": torch.randint(0, 64, (2, 8)), "use_cache": False}
    space = trainonce.analyze(model, inputs)
    assert space.num_prunable_zigs >= 2 * 128  # every MLP's hidden neurons
