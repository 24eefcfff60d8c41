"""The figures `trainonce.exporters` return are measured on the written file, not assumed."""

import pytest
import safetensors.torch as st
import torch

from trainonce.exporters import ExportMismatch, export


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(144, 3),
    ).eval()


def test_safetensors_diff_is_measured_on_the_file(tmp_path, monkeypatch):
    model, x = _model(), torch.randn(2, 1, 8, 8)
    path, diff = export(model, x, "safetensors", tmp_path)
    assert diff == 0.0 and path.is_file()
    fresh = _model()
    with torch.no_grad():
        for t in fresh.state_dict().values():
            t.zero_()
    st.load_model(fresh, str(path))
    assert torch.equal(fresh(x), model(x))

    real = st.save_model

    def lossy(m, filename, **kw):  # a writer that drops precision: the check must see it
        sd = {k: v.half().float() for k, v in m.state_dict().items()}
        lossy_model = _model()
        lossy_model.load_state_dict(sd)
        real(lossy_model, filename, **kw)

    monkeypatch.setattr(st, "save_model", lossy)
    (tmp_path / "again").mkdir()
    with pytest.raises(ExportMismatch, match="safetensors"):
        export(model, x, "safetensors", tmp_path / "again")
    assert list((tmp_path / "again").iterdir()) == []  # nothing half-checked is left


def test_torch_export_diff_and_atomicity(tmp_path):
    model, x = _model(), torch.randn(1, 1, 8, 8)
    path, diff = export(model, x, "torch-export", tmp_path)
    assert diff <= 1e-6 and [p.name for p in tmp_path.iterdir()] == ["model.pt2"]
    with torch.no_grad():
        assert torch.allclose(torch.export.load(str(path)).module()(x), model(x))
