#!/usr/bin/env python
"""python scripts/predict.py --model DIR ADDRESS ...  ==  address-completion predict ..."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from address_completion.cli import main  # noqa: E402

sys.exit(main(["predict", *sys.argv[1:]]))
