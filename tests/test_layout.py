"""The package is grouped by concern; the flat names of earlier releases still import."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import address_completion
from address_completion import _MOVED

PACKAGE = Path(address_completion.__file__).parent
ROOT = PACKAGE.parent


@pytest.mark.parametrize("old, new", sorted(_MOVED.items()))
def test_flat_module_name_is_the_moved_module(old, new):
    assert importlib.import_module(f"address_completion.{old}") is importlib.import_module(f"address_completion.{new}")


def test_every_alias_points_at_an_existing_module():
    for new in _MOVED.values():
        assert (PACKAGE / (new.replace(".", "/") + ".py")).is_file(), new


def test_unknown_module_still_fails_to_import():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("address_completion.no_such_module")


def test_old_import_style_in_a_fresh_process():
    code = ("from address_completion.modeling import load_model; from address_completion import train; "
            "import address_completion.generate as g; print(train.__name__, g.__name__, load_model.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["address_completion.training.train", "address_completion.inference.generate",
                           "address_completion.model.modeling"]


def test_architecture_doc_lists_every_module():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")
                     if p.name not in ("__init__.py", "__main__.py"))
    missing = [str(m) for m in modules if f" {m.name} " not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not describe: {missing}"
