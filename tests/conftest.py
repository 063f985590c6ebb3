"""Shared pytest fixtures.

The environment is prepared before any test module can import paddle: ``import paddle`` pins
``OMP_NUM_THREADS=1`` unless it is already set, and offline mode keeps PaddleNLP off the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from address_completion.runtime import prepare_environment

prepare_environment(offline=True)

import pytest  # noqa: E402  (after prepare_environment on purpose)


# ---------------------------------------------------------------- default model (tiny Qwen2, real tokenizer)


@pytest.fixture(scope="session")
def default_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model (seed 0, default shape), built once per session; treat it as read-only.

    The tokenizer's BPE files come from the on-disk cache (``$ADDRESS_COMPLETION_CACHE`` or
    ``~/.cache/address_completion``), so only the first session on a machine derives them (~3 s).
    """
    from address_completion.default_model import build_default_model

    return build_default_model(tmp_path_factory.mktemp("default-model") / "model")


@pytest.fixture(scope="session")
def qwen_tokenizer(default_model_dir: Path) -> Any:
    """PaddleNLP's AutoTokenizer loaded from the default model: the real Qwen2.5-Instruct tokenizer."""
    from paddlenlp.transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_dir))


# ---------------------------------------------------------------- LoRA adapter on the default model


@pytest.fixture(scope="session")
def lora_adapter_dir(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter (r=4, all linear layers) for the default model, saved as training saves one
    (safetensors, PaddleNLP's unified-checkpoint layout); read-only.

    lora_B starts at zero in a fresh adapter, which would make merging trivial and leave the random
    model's output a single repeated token; seeded non-zero values make the adapter change the
    logits and make greedy outputs vary between prompts.
    """
    import numpy as np
    from paddlenlp.peft import LoRAConfig, LoRAModel

    from address_completion.modeling import load_model, save_adapter

    folder = tmp_path_factory.mktemp("lora-adapter")
    config = LoRAConfig(target_modules=[f".*{name}.*" for name in ("q_proj", "k_proj", "v_proj", "o_proj",
                                                                   "gate_proj", "up_proj", "down_proj")],
                        r=4, lora_alpha=8, lora_dropout=0.0, dtype="float32",
                        base_model_name_or_path=str(default_model_dir))
    lora_model = LoRAModel(load_model(str(default_model_dir)), config)
    rng = np.random.default_rng(0)
    for name, parameter in lora_model.named_parameters():
        if "lora_B" in name:
            parameter.set_value(rng.normal(0.0, 0.5, size=parameter.shape).astype("float32"))
    save_adapter(lora_model, folder)
    return folder
