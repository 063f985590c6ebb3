"""Build the tiny offline default model: Qwen2 architecture, the real Qwen2.5 tokenizer, random weights.

The folder has the layout of a PaddleNLP Qwen2.5 model (config.json, generation_config.json,
model.safetensors, tokenizer files with the Qwen2.5-Instruct chat template), so every later stage
treats it exactly like Qwen2.5-0.5B-Instruct, only much smaller. Nothing is downloaded.

Its vocabulary is Qwen2.5's full 151,936 rows, so the output layer dominates the cost of a training
step; the transformer itself is kept tiny (64 hidden units, 2 layers by default) so that a few hundred
training steps on a few thousand address pairs take minutes on 2 CPU cores. Weights are drawn from a
NumPy generator seeded with --seed: the same seed gives the same file on every machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from .. import __version__
from .. import files, flags
from ..data import dataio
from . import tokenizer
from ..errors import ConfigError
from ..flags import flag_name, parse_bool
from ..runtime import import_paddle, logger, prepare_environment, quiet_paddlenlp_logs

DEFAULT_OUTPUT = Path("outputs") / "default-model"
PROVENANCE_FILE = "address_completion.json"
INITIALIZER_RANGE = 0.02
MAX_NEW_TOKENS = 64  # a full address is ~10-40 Qwen2.5 tokens


@dataclass(frozen=True)
class ModelShape:
    """The size knobs of the tiny model (everything else follows Qwen2.5-0.5B-Instruct)."""

    hidden_size: int = 64
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2

    def check(self) -> None:
        """Raise ConfigError naming the flag when the shape cannot make a Qwen2 model."""
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{flag_name(name)} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"--hidden-size ({self.hidden_size}) must be divisible by --num-attention-heads "
                              f"({self.num_attention_heads})")
        head_dim = self.hidden_size // self.num_attention_heads
        if head_dim % 2:
            raise ConfigError(f"head size --hidden-size / --num-attention-heads = {head_dim} must be even "
                              "(rotary position embeddings rotate pairs of dimensions)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"--num-attention-heads ({self.num_attention_heads}) must be divisible by "
                              f"--num-key-value-heads ({self.num_key_value_heads})")


def default_model_dir() -> Path:
    """Where the demo and the bundled configs expect the default model: ./outputs/default-model."""
    return Path.cwd() / DEFAULT_OUTPUT


def model_config(shape: ModelShape) -> dict[str, Any]:
    """Qwen2Config arguments: Qwen2.5-0.5B-Instruct's settings with the tiny shape."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": tokenizer.MODEL_VOCAB_SIZE,
        **asdict(shape),
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "seq_length": 32768,
        "initializer_range": INITIALIZER_RANGE,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": shape.num_hidden_layers,
        "tie_word_embeddings": True,
        "use_flash_attention": False,
        "use_cache": True,
        "bos_token_id": tokenizer.BPE_TOKEN_COUNT,  # <|endoftext|>
        "eos_token_id": tokenizer.BPE_TOKEN_COUNT + 2,  # <|im_end|>
        "pad_token_id": tokenizer.BPE_TOKEN_COUNT,
        "dtype": "float32",
    }


def generation_config() -> dict[str, Any]:
    """Greedy decoding that stops on <|im_end|> or <|endoftext|>, as Qwen2.5-Instruct lists its stop ids."""
    endoftext, im_end = tokenizer.BPE_TOKEN_COUNT, tokenizer.BPE_TOKEN_COUNT + 2
    return {
        "bos_token_id": endoftext,
        "eos_token_id": [im_end, endoftext],
        "pad_token_id": endoftext,
        "decode_strategy": "greedy_search",
        "do_sample": False,
        "num_beams": 1,
        "repetition_penalty": 1.0,
        "max_new_tokens": MAX_NEW_TOKENS,
        "use_cache": True,
    }


def iter_initial_weights(parameters: dict[str, tuple[int, ...]], seed: int,
                         num_layers: int) -> Iterator[tuple[str, Any]]:
    """(name, array) of Qwen2's initialisation, drawn from ``numpy.random.default_rng(seed)`` in parameter order.

    Matrices ~ N(0, 0.02) (output projections of attention and MLP scaled by 1/sqrt(2 * layers), as
    PaddleNLP's Qwen2 does), RMSNorm scales = 1, biases = 0. NumPy instead of Paddle's global
    generator keeps the result independent of anything else the process seeded. One array at a time, so a
    0.5B-shape model is not held twice in memory.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    residual_scale = 1.0 / math.sqrt(2 * num_layers)
    for name, shape in parameters.items():
        if "norm" in name:
            yield name, np.ones(shape, dtype=np.float32)
        elif name.endswith(".bias"):
            yield name, np.zeros(shape, dtype=np.float32)
        else:
            values = rng.normal(0.0, INITIALIZER_RANGE, size=shape).astype(np.float32)
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                values *= residual_scale
            yield name, values


def initial_weights(parameters: dict[str, tuple[int, ...]], seed: int, num_layers: int) -> dict[str, Any]:
    """Every array of :func:`iter_initial_weights`, by parameter name."""
    return dict(iter_initial_weights(parameters, seed, num_layers))


def create_model(shape: ModelShape, seed: int) -> Any:
    """A Qwen2ForCausalLM with the tiny shape and seeded weights (needs prepare_environment first)."""
    from paddlenlp.generation import GenerationConfig
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(**model_config(shape)))
    # named_parameters lists a tied weight once (the embedding doubles as the output layer).
    parameters = dict(model.named_parameters())
    for name, values in iter_initial_weights({name: tuple(p.shape) for name, p in parameters.items()}, seed,
                                             shape.num_hidden_layers):
        parameters[name].set_value(values)
    model.generation_config = GenerationConfig(**generation_config())
    model.eval()
    return model


def _version(distribution: str) -> str:
    from importlib import metadata

    for name in (distribution, f"{distribution}-gpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def provenance(shape: ModelShape, seed: int, parameter_count: int, weights_file: str) -> dict[str, Any]:
    """What address_completion.json records: enough to rebuild the folder and to recognise it."""
    return {
        "built_by": f"address_completion {__version__} (address-completion build-model), "
                    f"paddlepaddle {_version('paddlepaddle')}, paddlenlp {_version('paddlenlp')}",
        "purpose": "tiny randomly initialised Qwen2-architecture model for the offline demo and tests",
        "seed": seed,
        "shape": asdict(shape),
        "vocab_size": tokenizer.MODEL_VOCAB_SIZE,
        "parameters": parameter_count,
        "weights": weights_file,
        "weights_format": "pickle" if weights_file.endswith(".pdparams") else "safetensors",
        "tokenizer": f"Qwen2.5 (BPE ranks from {tokenizer.TIKTOKEN_PACKAGE}'s qwen.tiktoken, "
                     f"sha256 {tokenizer.TIKTOKEN_SHA256})",
        "rebuild": f"address-completion build-model --seed {seed} "
                   + " ".join(f"{flag_name(k)} {v}" for k, v in asdict(shape).items())
                   + (" --safe-serialization false" if weights_file.endswith(".pdparams") else ""),
    }


def _spell_out_configs(folder: Path) -> None:
    """save_pretrained omits values equal to PaddleNLP's defaults; write the ones readers rely on."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(use_flash_attention=False, dtype="float32")
    dataio.write_json(config_path, dict(sorted(config.items())))
    dataio.write_json(folder / "generation_config.json", generation_config())


def build_default_model(output_dir: str | os.PathLike | None = None, *, force: bool = False, seed: int = 0,
                        hidden_size: int = 64, intermediate_size: int = 256, num_hidden_layers: int = 2,
                        num_attention_heads: int = 4, num_key_value_heads: int = 2,
                        safe_serialization: bool = True) -> Path:
    """Build the default model folder at ``output_dir`` (default: :func:`default_model_dir`); return it.

    The weights are ``model.safetensors`` (header metadata ``format: np``, PaddleNLP's tag for its own
    layout); ``safe_serialization=False`` writes the older pickled ``model_state.pdparams`` instead.
    """
    shape = ModelShape(hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads)
    shape.check()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    output_dir = Path(output_dir) if output_dir is not None else default_model_dir()
    with files.output_lock(output_dir, "--output"):  # one run per output folder at a time
        _build(output_dir, shape, seed, force=force, safe_serialization=safe_serialization)
    return output_dir


def _build(output_dir: Path, shape: ModelShape, seed: int, *, force: bool, safe_serialization: bool) -> None:
    files.check_model_folder(output_dir, force)
    prepare_environment(offline=True)
    import_paddle()
    with files.atomic_folder(output_dir, overwrite=force) as staging:
        tokenizer.write_qwen25_tokenizer(staging)  # first: a missing dashscope fails before any model work
        model = create_model(shape, seed)
        quiet_paddlenlp_logs()  # its "saved in <staging folder>" lines would name a folder that vanishes
        model.save_pretrained(str(staging), safe_serialization=safe_serialization)
        _spell_out_configs(staging)
        count = sum(int(math.prod(p.shape)) for p in model.parameters())
        weights_file = "model.safetensors" if safe_serialization else "model_state.pdparams"
        dataio.write_json(staging / PROVENANCE_FILE, provenance(shape, seed, count, weights_file))
    logger.debug("default model: %s parameters, seed %d, shape %s", f"{count:,}", seed, shape)


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=flags.user_path, default=DEFAULT_OUTPUT,
                        help="model folder to create (relative paths are relative to the current folder)")
    parser.add_argument("--force", action="store_true", help="replace an existing model folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initial weights")
    parser.add_argument("--safe-serialization", "--safe_serialization", dest="safe_serialization",
                        type=parse_bool, default=True,
                        help="write model.safetensors (true) or the older pickled model_state.pdparams (false)")
    helps = {"hidden_size": "width of embeddings and hidden states (the 151,936 vocabulary rows stay)",
             "intermediate_size": "width of each MLP", "num_hidden_layers": "number of transformer layers",
             "num_attention_heads": "query heads per layer (must divide --hidden-size)",
             "num_key_value_heads": "key/value heads per layer (must divide --num-attention-heads)"}
    for name, value in asdict(ModelShape()).items():
        parser.add_argument(flag_name(name), type=int, default=value, help=helps[name])


def run(args: argparse.Namespace) -> int:
    shape = {name: getattr(args, name) for name in asdict(ModelShape())}
    output = build_default_model(args.output, force=args.force, seed=args.seed,
                                 safe_serialization=args.safe_serialization, **shape)
    print(f"default model written to {output.resolve()}")
    return 0
