"""``--model`` / ``--data`` as ``path/to/file.py:function`` or a ``module:function`` in the current
directory (no PYTHONPATH, sys.path untouched), and `trainonce.load_run` on the resulting run."""

import sys
import textwrap

import pytest
import torch

import trainonce
from trainonce.cli.main import main
from trainonce.spec import resolve_callable

MODEL_SRC = textwrap.dedent("""
    from torch import nn
    CALLS = []

    def net(num_classes=10, in_channels=1):
        CALLS.append(1)
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
""")
DATA_SRC = textwrap.dedent("""
    from torch.utils.data import TensorDataset
    from trainonce.data import load_data

    def digits():
        b = load_data("digits")
        x, y = b.train.tensors
        return TensorDataset(x[:256], y[:256]), b.test
""")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project directory, made the current directory: models/net.py, mydata.py."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(MODEL_SRC)
    (tmp_path / "mydata.py").write_text(DATA_SRC)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("mydata", "trainonce_user_", "models"))]:
        del sys.modules[name]


def test_file_spec_loads_without_touching_sys_path(project):
    before = list(sys.path)
    fn = resolve_callable("models/net.py:net")
    assert isinstance(fn(3, 1), torch.nn.Module)
    assert resolve_callable(f"{project}/models/net.py:net") is fn  # one module per file
    assert sys.path == before


def test_module_spec_found_in_current_directory(project):
    before = list(sys.path)
    assert resolve_callable("mydata:digits").__module__ == "mydata"
    assert resolve_callable("models.net:net").__module__ == "models.net"  # namespace package
    assert sys.path == before


def test_plain_folder_in_current_directory_does_not_shadow_an_installed_package(
        project, tmp_path_factory, monkeypatch):
    site = tmp_path_factory.mktemp("site")
    (site / "shadowpkg").mkdir()
    (site / "shadowpkg" / "__init__.py").write_text("def f():\n    return 'installed'\n")
    (project / "shadowpkg").mkdir()  # e.g. a data folder that happens to have the name
    monkeypatch.syspath_prepend(str(site))
    try:
        assert resolve_callable("shadowpkg:f")() == "installed"
    finally:
        sys.modules.pop("shadowpkg", None)


@pytest.mark.parametrize(("spec", "message"), [
    ("models/missing.py:net", "no file models/missing.py"),
    ("models/net.py:nope", "has no callable 'nope'"),
    ("no_such_mod:f", "looked up in the current directory"),
])
def test_bad_specs_say_what_is_wrong(project, spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_callable(spec)


def test_run_with_file_specs_then_load_run(project, capsys):
    out = project / "run"
    argv = ["run", "--model", "models/net.py:net", "--data", "mydata:digits", "--epochs", "1",
            "--no-onnx",
            "--batch-size", "64", "--target-flops", "0.6", "--align", "1", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    with pytest.raises(ValueError, match="trust_run_config=True"):
        trainonce.load_run(out)
    net = resolve_callable("models/net.py:net")
    x = torch.randn(4, 1, 8, 8)
    trusted = trainonce.load_run(out, trust_run_config=True)
    given = trainonce.load_run(out, lambda: net(10, 1))
    dense = net(10, 1)
    dense.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    with torch.no_grad():
        ref = dense.eval()(x)
        assert torch.allclose(trusted(x), ref, atol=1e-5)
        assert torch.equal(trusted(x), given(x))
    assert not trusted.training
    assert sum(p.numel() for p in trusted.parameters()) < sum(p.numel() for p in dense.parameters())


def test_load_run_rebuilds_a_builtin_model_by_itself(tmp_path):
    out = tmp_path / "builtin"
    argv = ["run", "--data", "digits", "--epochs", "1", "--batch-size", "256", "--out", str(out),
            "--no-onnx",
            "--no-progress"]
    assert main(argv) == 0
    slim = trainonce.load_run(out)
    assert slim(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_load_run_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a trainonce run directory"):
        trainonce.load_run(tmp_path)


CLASS_SRC = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=10, in_channels=1):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1),
                                      nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.head = nn.Linear(8, num_classes)

        def forward(self, x):
            return self.head(self.body(x).mean((2, 3)))

    def net(num_classes=10, in_channels=1):
        return Net(num_classes, in_channels)
""")


def test_file_spec_model_class_survives_a_copied_project(project, tmp_path_factory, monkeypatch):
    """A run whose --model file.py:factory defines its own class records that class under a
    name that does not depend on where the project lies: load_run with the user's own factory
    (imported as Python would, or resolved again) and export work from a copy of the project."""
    import shutil

    (project / "models" / "cls.py").write_text(CLASS_SRC)
    out = project / "run"
    argv = ["run", "--model", "models/cls.py:net", "--data", "mydata:digits", "--epochs", "1",
            "--no-onnx",
            "--batch-size", "64", "--target-flops", "0.6", "--align", "1", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    recipe = (out / "slim" / "recipe.json").read_text()
    assert '"architecture": "models.cls.Net"' in recipe
    copy = tmp_path_factory.mktemp("elsewhere") / "project"
    shutil.copytree(project, copy)
    monkeypatch.chdir(copy)
    for name in [m for m in sys.modules if m.startswith(("trainonce_user_", "models"))]:
        del sys.modules[name]
    x = torch.randn(4, 1, 8, 8)
    resolved = trainonce.load_run("run", resolve_callable("models/cls.py:net"))
    imported = trainonce.load_run("run", resolve_callable("models.cls:net"))  # a real import
    trusted = trainonce.load_run("run", trust_run_config=True)
    assert not any(m.training for s in (resolved, imported, trusted) for m in s.modules())
    with torch.no_grad():
        assert torch.equal(resolved(x), imported(x)) and torch.equal(resolved(x), trusted(x))
    assert main(["export", "run", "--model", "models/cls.py:net", "--format", "safetensors"]) == 0
    with pytest.raises(ValueError, match="built torch.nn.modules.linear.Linear"):
        trainonce.load_run("run", lambda: torch.nn.Linear(2, 2))
