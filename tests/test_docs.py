"""Every repository path the README and docs/ name exists, so that the docs keep up with the code."""

import re

import pytest

from tests.conftest import REPOSITORY

DOCUMENTS = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]
#: A path with at least one folder, ending in a file type the repository holds (bare file names in
#: tables are relative to the row's folder and are left out).
PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w.-]+\.(?:py|md|yaml|png))(?![\w/])")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_path_a_document_names_exists(document):
    named = set(PATH.findall(document.read_text()))
    missing = sorted(p for p in named if not (REPOSITORY / p).exists() and not (document.parent / p).exists())
    assert not missing, f"{document.name} names paths that do not exist: {missing}"
