"""save/load: safetensors + JSON recipe, no pickles, exact round trip."""

import json

import pytest
import torch
from equivalence import make_zeroing_visible
from handwritten import CASES
from torch import nn

import trainonce
from trainonce.subnet.recipe import VERSION


def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3),
                         nn.Flatten(), nn.Linear(6 * 4 * 4, 5))


def test_round_trip_eager(tmp_path):
    model, x = factory(), torch.randn(2, 3, 8, 8)
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    slim = trainonce.construct_subnet(model, space).eval()
    out = trainonce.save(slim, tmp_path / "run")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "recipe.json"]
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["kind"] == "eager" and recipe["removed"]
    back = trainonce.load(out, factory).eval()
    assert torch.equal(slim(x), back(x))


def test_round_trip_program_fallback(tmp_path):
    cls, x = CASES["concat_slice"]
    make = lambda: (torch.manual_seed(0), cls())[1]  # noqa: E731
    model = make()
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    with pytest.warns(UserWarning, match="slim traced program"):
        slim = trainonce.construct_subnet(model, space)
    trainonce.save(slim, tmp_path)
    back = trainonce.load(tmp_path, make)
    assert torch.equal(slim(x)[0], back(x)[0])


def test_load_rejects_other_architecture(tmp_path):
    model, x = factory(), torch.randn(2, 3, 8, 8)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    trainonce.save(trainonce.construct_subnet(model, space), tmp_path)
    with pytest.raises(ValueError, match="holds a torch.nn.modules.container.Sequential"):
        trainonce.load(tmp_path, lambda: nn.Linear(2, 2))


def test_save_needs_a_slim_model(tmp_path):
    with pytest.raises(ValueError, match="construct_subnet"):
        trainonce.save(nn.Linear(2, 2), tmp_path)
    assert not any(tmp_path.iterdir())


def saved(tmp_path, sparsity=0.5, name="run"):
    model, x = factory(), torch.randn(2, 3, 8, 8)
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(sparsity, 0)
    slim = trainonce.construct_subnet(model, space).eval()
    return trainonce.save(slim, tmp_path / name), slim, x


def edit_recipe(path, change):
    recipe = json.loads((path / "recipe.json").read_text())
    change(recipe)
    (path / "recipe.json").write_text(json.dumps(recipe))


def first_removed(recipe):
    name = next(iter(recipe["removed"]))
    return recipe["removed"][name]


@pytest.mark.parametrize("change, field", [
    (lambda r: r.pop("removed"), "'removed' is missing"),
    (lambda r: r.update(removed=[1, 2]), "'removed' must be a dict, not list"),
    (lambda r: first_removed(r).update({"0": [0, 999]}), "'removed' keeps positions"),
    (lambda r: first_removed(r).update({"7": [0]}), "'removed' keeps positions"),
    (lambda r: r["removed"].update({"nope.weight": {"0": [0]}}), "'removed' names 'nope.weight'"),
    (lambda r: r.update(kind="graph"), "'kind' is 'graph'"),
    (lambda r: r.update(zero_zigs=[-1]), "'zero_zigs' must list ZIG ids"),
    (lambda r: r.update(inputs={"args": [{"tensor": [2], "dtype": "nope"}], "kwargs": {}}),
     "'inputs' has an unknown dtype"),
    (lambda r: r.update(version=VERSION + 1), f"'version' is {VERSION + 1}"),
    (lambda r: r.update(format="other/1"), "'format' is 'other/1'"),
    (lambda r: r.update(weights_sha256=None), "'weights_sha256' must be a str"),
])
def test_malformed_recipe_names_the_field(tmp_path, change, field):
    out, _, _ = saved(tmp_path)
    edit_recipe(out, change)
    with pytest.raises(ValueError, match=field):
        trainonce.load(out, factory)


def test_program_recipe_with_out_of_range_zig(tmp_path):
    cls, x = CASES["concat_slice"]
    make = lambda: (torch.manual_seed(0), cls())[1]  # noqa: E731
    model = make()
    make_zeroing_visible(model, x)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    with pytest.warns(UserWarning, match="slim traced program"):
        trainonce.save(trainonce.construct_subnet(model, space), tmp_path / "p")
    edit_recipe(tmp_path / "p", lambda r: r["zero_zigs"].append(10_000))
    with pytest.raises(ValueError, match="'zero_zigs' names ZIG 10000"):
        trainonce.load(tmp_path / "p", make)


def test_load_refuses_edited_weights(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    out, _, _ = saved(tmp_path)
    tensors = st.load_file(str(out / "model.safetensors"))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1  # same shapes: only the hash can tell
    st.save_file(tensors, str(out / "model.safetensors"))
    with pytest.raises(ValueError, match="is not the weights file saved with .*SHA-256"):
        trainonce.load(out, factory)


def test_version_1_recipe_still_loads(tmp_path):
    out, slim, x = saved(tmp_path)

    def to_v1(r):
        for key in ("version", "weights_sha256", "structures"):
            r.pop(key)
        r["format"] = "trainonce-slim/1"

    edit_recipe(out, to_v1)
    back = trainonce.load(out, factory).eval()
    assert back.trainonce_recipe.version == 1
    assert torch.equal(slim(x), back(x))
    trainonce.save(back, out)  # saved again: in the current version, with a hash
    assert json.loads((out / "recipe.json").read_text())["version"] == VERSION


def test_failed_recipe_write_keeps_previous_save(tmp_path, monkeypatch):
    out, slim, x = saved(tmp_path, 0.5)
    _, other, _ = saved(tmp_path, 0.2, name="other")

    def fail(self):
        raise OSError("disk full")

    monkeypatch.setattr(type(other.trainonce_recipe), "to_json", fail)
    with pytest.raises(OSError, match="disk full"):
        trainonce.save(other, out)
    monkeypatch.undo()
    assert torch.equal(trainonce.load(out, factory).eval()(x), slim(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "run"]  # nothing left over


def test_failed_swap_keeps_previous_save(tmp_path, monkeypatch):
    import os

    out, slim, x = saved(tmp_path, 0.5)
    _, other, _ = saved(tmp_path, 0.2, name="other")
    real, calls = os.rename, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the swap's second move: the new save into place
            raise OSError("crash between the two writes")
        real(src, dst)

    monkeypatch.setattr(os, "rename", second_fails)
    with pytest.raises(OSError, match="crash"):
        trainonce.save(other, out)
    monkeypatch.undo()
    assert torch.equal(trainonce.load(out, factory).eval()(x), slim(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "run"]


def test_save_replaces_a_previous_save(tmp_path):
    out, _, _ = saved(tmp_path, 0.5)
    _, other, x = saved(tmp_path, 0.2, name="other")
    trainonce.save(other, out)
    assert torch.equal(trainonce.load(out, factory).eval()(x), other(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "run"]


def test_save_leaves_other_files_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    model, x = factory(), torch.randn(2, 3, 8, 8)
    space = trainonce.analyze(model, x)
    space.zero_random_groups(0.5, 0)
    with pytest.raises(ValueError, match=r"holds other files \(notes.txt\)"):
        trainonce.save(trainonce.construct_subnet(model, space), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_version_2_recipe_still_loads(tmp_path):
    out, slim, x = saved(tmp_path)
    edit_recipe(out, lambda r: r.update(version=2))  # flat tensor inputs: what 2 could say
    back = trainonce.load(out, factory)
    assert back.trainonce_recipe.version == 2 and torch.equal(slim(x), back(x))
