"""address_completion: LoRA fine-tuning of a small LLM to complete Chinese postal addresses.

Modules never import paddle / paddlenlp at import time: every entry point first calls
``address_completion.runtime.prepare_environment`` (threads, offline flags), then imports Paddle.

The package is grouped by concern (``data``, ``model``, ``training``, ``inference``, ``evaluation``).
The flat module names of earlier releases (``address_completion.modeling``, ``address_completion.train``, …)
still import: they name the same module objects as their new homes (see ``_MOVED``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

DEFAULT_PROMPT_PREFIX = "补齐五级行政地址: "

# old flat module name -> its home since the package was grouped by concern
_MOVED = {
    "dataio": "data.dataio", "gazetteer": "data.gazetteer", "synthesis": "data.synthesis", "split": "data.split",
    "prompt": "data.prompt",
    "modeling": "model.modeling", "tokenizer": "model.tokenizer", "default_model": "model.default_model",
    "train": "training.train", "config": "training.config", "merge": "training.merge",
    "generate": "inference.generate", "predict": "inference.predict", "serve": "inference.serve",
    "api": "inference.api",
    "evaluate": "evaluation.evaluate", "metrics": "evaluation.metrics", "report": "evaluation.report",
    "systems": "evaluation.systems",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``address_completion.<old name>`` to the module at its new home (the same object, so
    monkeypatching either name patches both)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{_MOVED[spec.name.rpartition('.')[2]]}")

    def exec_module(self, module):
        pass  # already executed under its new name


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
