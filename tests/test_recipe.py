"""The recipe module (format, one apply sequence), the verification of slim models, a search
space complete when constructed, and no import circle between io and subnet."""

import ast
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import trainonce
from trainonce.space.analysis import Analysis
from trainonce.subnet import slicing, verify
from trainonce.subnet.recipe import VERSION, Recipe, apply
from trainonce.subnet.slicing import removal_plan

SRC = Path(trainonce.__file__).parent


def bias_free():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))


def zeroed(model, x, sparsity=0.5):
    space = trainonce.analyze(model, x)
    space.zero_random_groups(sparsity, 0)
    return space


# ----- format ------------------------------------------------------------------------------
def test_recipe_json_round_trip():
    model, x = bias_free(), torch.randn(2, 4)
    slim = trainonce.construct_subnet(model, zeroed(model, x))
    recipe = slim.trainonce_recipe
    back = Recipe.from_json(recipe.to_json().replace('"weights_sha256": null',
                                                     '"weights_sha256": "' + "0" * 64 + '"'))
    assert (back.kind, back.architecture, back.zero_zigs, back.inputs, back.version) == (
        recipe.kind, recipe.architecture, recipe.zero_zigs, recipe.inputs, VERSION)
    assert back.removed.keys() == recipe.removed.keys() and back.removed
    for name, dims in recipe.removed.items():
        assert all(torch.equal(back.removed[name][d], k) for d, k in dims.items())
    assert back.structures == [] and json.loads(recipe.to_json())["structures"] == []


def test_malformed_or_misplaced_structures_are_refused():
    model, x = bias_free(), torch.randn(2, 4)
    data = json.loads(trainonce.construct_subnet(model, zeroed(model, x)).trainonce_recipe
                      .to_json())
    data.update(structures=[{"module": "2"}], weights_sha256="0" * 64)
    with pytest.raises(ValueError, match="'structures' must list"):
        Recipe.from_json(json.dumps(data))
    data.update(structures=[{"name": "2", "zig": 0}])  # a recipe of mode "prune"
    with pytest.raises(ValueError, match="'structures' needs a recipe made in mode 'erase'"):
        Recipe.from_json(json.dumps(data))
    data.update(mode="erase")  # eager: must name the deleted layer
    with pytest.raises(ValueError, match="must name the deleted 'layer'"):
        Recipe.from_json(json.dumps(data))
    data.update(mode="cut")
    with pytest.raises(ValueError, match="'mode' is 'cut'"):
        Recipe.from_json(json.dumps(data))


def test_apply_a_plan_is_the_eager_cut():
    model, x = bias_free(), torch.randn(2, 4)
    space = zeroed(model, x)
    slim = trainonce.construct_subnet(model, space)
    again = apply(bias_free(), removal_plan(space, space.zero_mask()))
    assert [p.shape for p in again.parameters()] == [p.shape for p in slim.parameters()]
    assert again[0].out_features == slim[0].out_features < 8


# ----- verification ------------------------------------------------------------------------
def corrupted(slim):
    with torch.no_grad():
        slim[0].weight[0, 0] += 1.0
    return slim


def test_all_zero_example_does_not_hide_a_wrong_cut():
    model, x = bias_free(), torch.zeros(2, 4)
    space = zeroed(model, x)
    slim = trainonce.construct_subnet(model, space)  # a correct cut passes
    assert verify.mismatch(model, slim, (x,), {}) is None
    problem = verify.mismatch(model, corrupted(slim), (x,), {})
    assert problem is not None and "random input" in problem


def test_construct_refuses_a_wrong_cut_behind_an_all_zero_example(monkeypatch):
    model, x = bias_free(), torch.zeros(2, 4)
    space = zeroed(model, x)
    real = slicing.cut

    def wrong(t, dims):
        out = real(t, dims)
        if out.dim() == 2:
            out[0, 0] += 1.0
        return out

    monkeypatch.setattr(slicing, "cut", wrong)
    with pytest.raises(trainonce.SubnetMismatchError, match="random input"):
        trainonce.construct_subnet(model, space)


def test_inplace_construction_is_checked_against_the_full_model(monkeypatch):
    model, x = bias_free(), torch.randn(2, 4)
    space = zeroed(model, x)
    real = slicing.cut
    monkeypatch.setattr(slicing, "cut", lambda t, dims: real(t, dims) * 1.5)
    with pytest.raises(trainonce.SubnetMismatchError, match="differs by"):
        trainonce.construct_subnet(model, space, inplace=True)


def test_inplace_construction_of_a_correct_cut():
    model, x = bias_free(), torch.randn(2, 4)
    space = zeroed(model, x)
    ref = model(x)
    slim = trainonce.construct_subnet(model, space, inplace=True)
    assert slim is model and slim[0].out_features < 8
    assert verify.within_tolerance(ref, slim(x))


class Returns(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.fn(x) * self.w


def test_nan_is_a_mismatch():
    x = torch.randn(3, 5)
    full = Returns(lambda t: t)
    nan_at_one = Returns(lambda t: torch.where(t == t[0, 0], torch.nan, t))
    assert verify.max_rel_diff(x, torch.full_like(x, torch.nan)) == float("inf")
    assert verify.mismatch(full, nan_at_one, (x,), {}) is not None
    # NaN where the full model has NaN too is agreement, not a mismatch
    both = Returns(lambda t: t.log())
    assert verify.mismatch(both, Returns(lambda t: t.log()), (x,), {}) is None


def test_float32_rounding_is_rechecked_in_float64():
    x = torch.randn(4, 6)
    # (t + 1e4) - 1e4 equals t, but float32 rounds it by ~5e-4: far above 1e-5 * max|y|
    rounded = Returns(lambda t: (t + 1e4) - 1e4)
    assert not verify.within_tolerance(Returns(lambda t: t)(x), rounded(x))
    assert verify.mismatch(Returns(lambda t: t), rounded, (x,), {}) is None
    wrong = Returns(lambda t: t + 1e-3)  # wrong in float64 as well
    assert "differs by" in verify.mismatch(Returns(lambda t: t), wrong, (x,), {})


def test_tolerance_is_dtype_aware():
    ref = torch.ones(4)
    assert verify.within_tolerance(ref, ref + 5e-6)
    assert not verify.within_tolerance(ref, ref + 5e-5)
    assert verify.within_tolerance(ref.half(), (ref + 5e-3).half())
    assert not verify.within_tolerance(ref.double(), ref.double() + 1e-8)
    assert verify.max_rel_diff(torch.tensor([1, 2]), torch.tensor([1, 3])) == float("inf")


def test_random_inputs_keep_shapes_dtypes_and_id_ranges():
    ids = torch.tensor([[3, 7, 5]])
    mask = torch.tensor([[True, False, True]])
    (a, m), kw = verify.random_inputs((ids, mask), {"x": torch.zeros(2, 3), "n": 4})
    assert a.dtype == ids.dtype and a.shape == ids.shape and 3 <= int(a.min()) <= int(a.max()) <= 7
    assert torch.equal(m, mask) and kw["n"] == 4
    assert kw["x"].shape == (2, 3) and kw["x"].dtype == torch.float32 and kw["x"].abs().sum() > 0


# ----- search space ------------------------------------------------------------------------
def test_search_space_is_complete_when_constructed():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    space = trainonce.analyze(model, torch.randn(1, 3, 8, 8))
    assert isinstance(space.analysis, Analysis)
    assert "1.running_mean" in space.buffer_slices
    rebuilt = trainonce.SearchSpace(model, space.groups, space.costs, space.notes,
                                    buffer_slices=space.buffer_slices, analysis=space.analysis)
    assert torch.equal(removal_plan(rebuilt, space.prunable_mask)["1.running_mean"][0],
                       removal_plan(space, space.prunable_mask)["1.running_mean"][0])
    node = next(n for n in space.analysis.traced.graph.nodes if n.op == "call_function")
    labels = space.analysis.labels_of(node.name)
    axis = labels.axis_spanning(1)
    assert torch.equal(space.analysis.zigs_of(axis), space.analysis.zig_of_atom[axis])
    from trainonce.space.build import Analysis as FromBuild
    assert FromBuild is Analysis


def test_hand_built_space_costs_its_parameters():
    model = nn.Linear(4, 3)
    space = trainonce.SearchSpace(model, [])
    assert space.analysis is None and space.buffer_slices == {}
    assert space.num_params() == 15


# ----- imports -----------------------------------------------------------------------------
def imports(file: Path) -> set[str]:
    """Modules a source file imports, resolved to dotted names under trainonce."""
    tree = ast.parse(file.read_text())
    package = ".".join(("trainonce",) + file.relative_to(SRC).parent.parts)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_subnet_never_imports_io_and_io_only_the_recipe():
    for file in (SRC / "subnet").glob("*.py"):
        assert not {m for m in imports(file) if m.startswith("trainonce.io")}, file.name
    from_subnet = {m for m in imports(SRC / "io.py") if m.startswith("trainonce.subnet")}
    assert from_subnet and all(m.startswith("trainonce.subnet.recipe") for m in from_subnet)
