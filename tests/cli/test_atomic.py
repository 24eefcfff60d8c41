"""`trainonce.atomic`: a file or a directory of files appears whole or not at all, and a
failure (or a crash) mid-write never loses the previous version."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainonce.atomic import atomic_dir, atomic_write, backup_path, recover_dir, replace_dir

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tree(path):
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def test_atomic_write_replaces_with_usual_permissions(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    atomic_write(target, lambda tmp: Path(tmp).write_text("new"))
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    seen = []

    def half(tmp):
        seen.append(tmp)
        Path(tmp).write_text("half-writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert seen[0].endswith(".onnx")  # the temp file keeps the suffix writers look at


def _save(path, weights, recipe):
    with atomic_dir(path) as tmp:
        (tmp / "weights").write_text(weights)
        (tmp / "recipe").write_text(recipe)


def test_atomic_dir_new_and_replace(tmp_path):
    target = tmp_path / "deep" / "slim"
    _save(target, "w1", "r1")
    assert _tree(target) == {"recipe": "r1", "weights": "w1"}
    assert target.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert (target / "weights").stat().st_mode & 0o777 == 0o666 & ~_umask()
    _save(target, "w2", "r2")
    assert _tree(target) == {"recipe": "r2", "weights": "w2"}
    assert [p.name for p in target.parent.iterdir()] == ["slim"]


def test_atomic_dir_failure_mid_write_keeps_previous(tmp_path):
    target = tmp_path / "slim"
    _save(target, "w1", "r1")
    with pytest.raises(RuntimeError, match="crash"), atomic_dir(target) as tmp:
        (tmp / "weights").write_text("w2")
        raise RuntimeError("crash before the recipe")
    assert _tree(target) == {"recipe": "r1", "weights": "w1"}
    assert [p.name for p in tmp_path.iterdir()] == ["slim"]


def test_atomic_dir_failed_swap_rolls_back(tmp_path, monkeypatch):
    target = tmp_path / "slim"
    _save(target, "w1", "r1")
    real = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".slim.tmp-"):  # the new directory cannot be moved in
            raise OSError("rename failed")
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        _save(target, "w2", "r2")
    monkeypatch.undo()
    assert _tree(target) == {"recipe": "r1", "weights": "w1"}
    assert [p.name for p in tmp_path.iterdir()] == ["slim"]


def test_crash_between_the_two_renames_is_recovered(tmp_path):
    """A process killed after moving the old directory aside and before moving the new one
    in: the previous save is whole under the backup name, and is restored."""
    target = tmp_path / "slim"
    _save(target, "w1", "r1")
    crash = f"""
import os
from pathlib import Path
from trainonce.atomic import atomic_dir
real = os.rename
def rename(src, dst):
    if Path(dst) == Path({str(target)!r}):
        os._exit(9)
    real(src, dst)
os.rename = rename
with atomic_dir({str(target)!r}) as tmp:
    (tmp / "weights").write_text("w2")
    (tmp / "recipe").write_text("r2")
"""
    env = {**os.environ, "PYTHONPATH": SRC}
    assert subprocess.run([sys.executable, "-c", crash], env=env).returncode == 9
    assert not target.exists() and _tree(backup_path(target)) == {"recipe": "r1", "weights": "w1"}
    assert recover_dir(target)
    assert _tree(target) == {"recipe": "r1", "weights": "w1"}
    # the next save recovers by itself too, and leaves no backup
    os.rename(target, backup_path(target))
    _save(target, "w3", "r3")
    assert _tree(target) == {"recipe": "r3", "weights": "w3"}
    assert not backup_path(target).exists()


def test_atomic_dir_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds other files"):
        _save(tmp_path, "w", "r")
    assert _tree(tmp_path) == {"notes.txt": "mine"}
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        _save(blocker, "w", "r")
    assert blocker.read_text() == "x"


def test_replace_dir_moves_a_staged_folder(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "old.png").write_text("old")
    staged = tmp_path / ".staging" / "plots"
    staged.mkdir(parents=True)
    (staged / "new.png").write_text("new")
    replace_dir(staged, tmp_path / "plots")
    assert _tree(tmp_path / "plots") == {"new.png": "new"}
    assert not staged.exists() and not backup_path(tmp_path / "plots").exists()
