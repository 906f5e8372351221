"""Writing files: every file the project writes appears under its final name only when complete, with
the mode any other new file of the user would get (0666 minus the umask: 0644 under the usual 022);
JSON and the per-case rows CSV (``metrics.csv``) written and read here."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def write_json_atomic(content: object, path: Path) -> None:
    """Write JSON atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2) + "\n")


def write_rows_csv(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """Write per-case rows as CSV atomically (columns: every field of any row, in order of first
    appearance); None and missing fields become empty cells (n/a)."""
    rows = list(rows)
    fields = list(dict.fromkeys(field for row in rows for field in row)) or ["case_id"]
    with atomic_write(path) as temporary, temporary.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


#: Columns of a rows CSV that hold text; every other column holds numbers (empty: None).
TEXT_COLUMNS = ("method", "role", "case_id", "reference", "degenerate")


def read_rows_csv(path: Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_rows_csv`, with numbers as floats and empty cells as None."""
    rows = []
    with path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            rows.append(
                {
                    key: value if key in TEXT_COLUMNS else float(value) if value not in ("", None) else None
                    for key, value in row.items()
                }
            )
    return rows


def cache_root() -> Path:
    """Where generated data and models are kept between runs: ``$MRI_SYNTHESIS_CACHE``, else
    ``$XDG_CACHE_HOME/mri-synthesis``, else ``~/.cache/mri-synthesis``."""
    configured = os.environ.get("MRI_SYNTHESIS_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "mri-synthesis"
