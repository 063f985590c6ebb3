"""The package is grouped by concern; docs/ARCHITECTURE.md describes every module."""

import importlib
from pathlib import Path

import pytest

import address_completion

PACKAGE = Path(address_completion.__file__).parent
ROOT = PACKAGE.parent


def test_flat_module_names_of_the_unreleased_layout_are_gone():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("address_completion.modeling")


def test_architecture_doc_lists_every_module():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")
                     if p.name not in ("__init__.py", "__main__.py"))
    missing = [str(m) for m in modules if f" {m.name} " not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not describe: {missing}"
