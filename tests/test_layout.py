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


def test_setup_package_data_ships_every_resource_and_names_only_files_that_exist():
    """setup.py's package_data lists every non-Python file inside the package (a wheel or non-editable install ships
    nothing else: the web page would be missing), and each of its globs matches a file (it once listed a resources/
    folder that did not exist yet)."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    globs = [ast.literal_eval(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.keyword) and node.arg == "package_data"]
    shipped = set()
    for package_data in globs:
        for package, patterns in package_data.items():
            folder = ROOT / package.replace(".", "/")
            for pattern in patterns:
                matched = {path for path in folder.glob(pattern) if path.is_file()}
                assert matched, f"setup.py package_data {package}: {pattern} matches no file"
                shipped |= matched
    resources = {path for path in PACKAGE.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")
                 and "__pycache__" not in path.parts}
    assert not resources - shipped, f"not in setup.py's package_data: {sorted(map(str, resources - shipped))}"
