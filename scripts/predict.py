#!/usr/bin/env python
"""python scripts/predict.py --model DIR ADDRESS ...  ==  address-completion predict ...

Run with a Python that lacks Paddle (the system's `python`), it runs itself again with the checkout's
.venv/bin/python when that exists (scripts/*.sh and demo.sh create it), so the README's command works as written.
"""
import importlib.util
import os
import sys

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VENV_PYTHON = os.path.join(REPO, ".venv", "bin", "python")

if importlib.util.find_spec("paddle") is None and os.path.isfile(VENV_PYTHON) \
        and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(REPO, ".venv")):
    os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])

sys.path.insert(0, REPO)
from address_completion.cli import main  # noqa: E402

sys.exit(main(["predict", *sys.argv[1:]]))
