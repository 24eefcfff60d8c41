"""Atomic file and directory writes: the one place trainonce makes a file or folder appear.

A reader sees either the previous version or the new one, never a half-written file or a mix.

API
---
``atomic_write(path, write)``
    ``write(tmp)`` fills a temp file beside ``path`` (same directory, so the rename cannot
    cross file systems; named ``.<stem>.tmp-XXXX<suffix>``: some writers look at the
    suffix). The file gets the usual permissions (``0o666 & ~umask``), is flushed to disk and
    renamed over ``path`` with ``os.replace``. On any failure the temp file is removed and
    ``path`` is untouched.

``with atomic_dir(path) as tmp: ...``
    For a directory of several files that must change together (weights + recipe). The block
    writes the files into the fresh temp directory ``tmp`` (beside ``path``); on a normal exit
    the finished directory (files given the usual permissions and flushed to disk) takes the
    place of ``path`` with `replace_dir`. If the block raises, ``tmp`` is removed and ``path``
    is untouched. ``path`` must be a new path, or a directory holding only names the block
    writes too: a directory with other entries is refused (FileExistsError) rather than
    replaced, so ``save(model, "~")`` cannot wipe a home folder.

``replace_dir(src, dst)``
    Put the finished directory ``src`` in place of ``dst`` (same file system). POSIX
    cannot rename over a non-empty directory, so the old ``dst`` is first renamed to the
    backup ``.<name>.old`` beside it, then ``src`` is renamed to ``dst``, then the backup is
    deleted. If the second rename fails, the backup is renamed back. A crash (power loss, kill)
    between the two renames leaves the previous contents whole under the backup name:
    `recover_dir` puts them back, and `atomic_dir` / `replace_dir` call it first.

``recover_dir(path)``
    If ``path`` is missing and its backup exists (a crash mid-swap), rename the backup back.
    Readers that must survive such a crash call it before reading ``path``.

Example (a slim-model directory whose weights and recipe change together)::

    with atomic_dir(path) as tmp:
        safetensors.torch.save_model(slim, str(tmp / "model.safetensors"))
        (tmp / "recipe.json").write_text(json.dumps(recipe))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_write", "backup_path", "recover_dir", "replace_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; directories cannot be opened on Windows."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it over ``path``.

    The file gets the usual permissions (``mkstemp`` makes 0600 files); on any failure, the
    temp file is removed and ``path`` is left as it was. Returns ``path``.
    """
    path = Path(path)
    # same suffix as the target: some writers (ONNX, torch.export) look at it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:  # the data must be on disk before the rename is
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def backup_path(path: str | os.PathLike) -> Path:
    """Where `replace_dir` keeps the previous version of ``path`` during the swap."""
    path = Path(path)
    return path.with_name(f".{path.name}.old")


def recover_dir(path: str | os.PathLike) -> bool:
    """Undo a swap cut short by a crash: restore the backup if ``path`` is missing.

    Returns True if something was restored. A backup beside an existing ``path`` is a swap
    that completed but did not clean up: it is deleted.
    """
    path = Path(path)
    old = backup_path(path)
    if not old.is_dir():
        return False
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        return False
    os.rename(old, path)
    return True


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the finished directory ``src`` to ``dst``, replacing an old ``dst`` as a whole.

    ``src`` must be on the file system of ``dst`` (a rename cannot cross one: OSError). On
    failure ``dst`` keeps its previous contents and ``src`` is left for the caller to remove.
    """
    src, dst = Path(src), Path(dst)
    recover_dir(dst)
    old = backup_path(dst)
    had_old = dst.is_dir() and not dst.is_symlink()
    if dst.exists() and not had_old:
        raise FileExistsError(f"{dst} exists and is not a directory; not replacing it")
    if had_old:
        os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        if had_old:
            os.rename(old, dst)
        raise
    _fsync_dir(dst.parent)
    if had_old:
        shutil.rmtree(old)
    return dst


def _settle_tree(root: Path) -> None:
    """Usual permissions (``mkdtemp`` makes 0700 folders, safetensors 0600 files) and every
    file flushed to disk, before the folder is renamed into place."""
    mask = _umask()
    for dirpath, _, files in os.walk(root):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in files:
            path = os.path.join(dirpath, name)
            os.chmod(path, 0o666 & ~mask)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _check_replaceable(path: Path, new: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path} exists and is not a directory; not replacing it")
    if path.is_dir():
        others = sorted({p.name for p in path.iterdir()} - {p.name for p in new.iterdir()})
        if others:
            raise FileExistsError(
                f"{path} holds other files ({', '.join(others[:5])}); "
                "write to a new or empty directory instead"
            )


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp directory beside ``path``; on success it replaces ``path`` whole.

    If the block raises, the temp directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        _check_replaceable(path, tmp)
        _settle_tree(tmp)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
