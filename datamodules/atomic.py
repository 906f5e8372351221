"""Every file the project writes appears under its final name only when complete, with the mode any
other new file of the user would get (0666 minus the umask: 0644 under the usual 022)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Marks a file being written; such files left by a killed process are removed by the next run.
PARTIAL = ".partial"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def extension(path: Path) -> str:
    """The extension that writers look at (``.nii.gz`` counts as one)."""
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (hidden, same extension) for the block to write; renamed to
    ``path`` when the block succeeds, removed when it fails. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{PARTIAL}{extension(path)}", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp creates 0600
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_partial_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed writer left under ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    leftovers = [path for path in folder.rglob(f".*{PARTIAL}*") if path.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers
