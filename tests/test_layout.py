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


def test_setup_package_data_names_files_that_exist():
    """Every package_data glob in setup.py matches a file in the package (it once listed a resources/ folder
    that never existed, so installs shipped nothing it promised)."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "package_data":
            for package, patterns in ast.literal_eval(node.value).items():
                folder = ROOT / package.replace(".", "/")
                for pattern in patterns:
                    assert [path for path in folder.glob(pattern) if path.is_file()], f"{package}: {pattern}"
