"""The rebuilt Qwen2.5 tokenizer: ids, round trips, chat template, files, cache and bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest

from address_completion.data import prompt
from address_completion import runtime
from address_completion.model import tokenizer
from address_completion.errors import ConfigError, DataError

SYSTEM_BLOCK = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
ADDRESS_PROMPT_IDS = [117698, 75108, 52334, 100059, 46477, 25, 10236, 95, 239, 99463, 23836, 99770, 44729,
                      105811, 45995, 19, 21, 22, 12, 21, 17992]


def encode(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------- token ids (Qwen2.5-0.5B-Instruct's)


def test_known_ids_match_qwen25(qwen_tokenizer):
    assert encode(qwen_tokenizer, "<|im_start|>hello<|im_end|>") == [151644, 14990, 151645]
    assert encode(qwen_tokenizer, "补齐五级行政地址: 碑林区扬子江南路467-6号") == ADDRESS_PROMPT_IDS


@pytest.mark.parametrize("text", [
    "陕西省西安市碑林区扬子江南路467-6号",
    "Hello, world!  Two spaces,\ttab and\nnew lines\n\n",
    "emoji 🎉👨‍👩‍👧 and accents: café naïve Ωμέγα",
    "全角１２３ＡＢＣ，混合 mixed 文本 ✓",
])
def test_decode_inverts_encode(qwen_tokenizer, text):
    assert qwen_tokenizer.decode(encode(qwen_tokenizer, text)) == text


def test_special_tokens_and_sizes(qwen_tokenizer):
    assert qwen_tokenizer.eos_token == "<|im_end|>" and qwen_tokenizer.eos_token_id == 151645
    assert qwen_tokenizer.pad_token == "<|endoftext|>" and qwen_tokenizer.pad_token_id == 151643
    assert qwen_tokenizer.eos_token_id != qwen_tokenizer.pad_token_id
    assert qwen_tokenizer.vocab_size == tokenizer.BPE_TOKEN_COUNT
    assert len(qwen_tokenizer) == 151665
    for token in tokenizer.ADDED_TOKENS:
        assert qwen_tokenizer.convert_tokens_to_ids(token.content) == token.id
    assert [t.id for t in tokenizer.ADDED_TOKENS] == list(range(151643, 151665))
    assert {t.content for t in tokenizer.ADDED_TOKENS if not t.special} == {
        "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
        "<|repo_name|>", "<|file_sep|>"}


def test_special_tokens_are_never_split_and_keep_following_newline(qwen_tokenizer):
    ids = encode(qwen_tokenizer, "<|im_start|>user\nx<|im_end|>\n<|endoftext|>")
    assert ids[0] == 151644 and ids[-1] == 151643
    assert ids[ids.index(151645) + 1] == 198  # "\n" after <|im_end|> survives


def test_decode_skips_special_tokens_on_request(qwen_tokenizer):
    ids = encode(qwen_tokenizer, "<|im_start|>assistant\n陕西省<|im_end|>")
    assert qwen_tokenizer.decode(ids, skip_special_tokens=True) == "assistant\n陕西省"


# ---------------------------------------------------------------- chat template


def test_render_prompt_is_qwen25_instruct_text(qwen_tokenizer):
    text = prompt.render_prompt(qwen_tokenizer, "碑林区扬子江南路467-6号")
    assert text == (SYSTEM_BLOCK + "<|im_start|>user\n补齐五级行政地址: 碑林区扬子江南路467-6号<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = encode(qwen_tokenizer, text)
    assert ids[:3] == [151644, 8948, 198]  # <|im_start|> system \n
    assert ids[24:24 + len(ADDRESS_PROMPT_IDS)] == ADDRESS_PROMPT_IDS
    assert ids[-3:] == [151644, 77091, 198]  # <|im_start|> assistant \n
    assert [ids[i + 1] for i, token in enumerate(ids) if token == 151645] == [198, 198]


def test_chat_template_with_system_message_and_several_turns(qwen_tokenizer):
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
                    {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]
    expected = ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nu1<|im_end|>\n"
                "<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\nu2<|im_end|>\n")
    assert qwen_tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False) == expected
    assert qwen_tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True) == (
        expected + "<|im_start|>assistant\n")


def test_chat_template_does_not_depend_on_jinja_whitespace_options():
    import jinja2

    messages = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    texts = {jinja2.Environment(trim_blocks=trim, lstrip_blocks=trim, keep_trailing_newline=True)
             .from_string(tokenizer.CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)
             for trim in (False, True)}
    assert texts == {SYSTEM_BLOCK + "<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
                     "<|im_start|>assistant\n"}


def test_paddlenlp_chat_encoding_splits_prompt_and_answer(qwen_tokenizer):
    """run_finetune's chat path (encode_chat_inputs) puts the system block in the prompt, the answer + EOS after."""
    source, target = qwen_tokenizer.encode_chat_inputs([["补齐五级行政地址: 碑林区", "陕西省西安市碑林区"]])["conversations"][0]
    assert qwen_tokenizer.decode(source) == prompt.render_prompt(qwen_tokenizer, "碑林区")
    assert qwen_tokenizer.decode(target) == "陕西省西安市碑林区<|im_end|>\n"


# ---------------------------------------------------------------- written files


def test_vocab_and_merges_files(default_model_dir):
    vocab = json.loads((default_model_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == tokenizer.BPE_TOKEN_COUNT
    assert list(vocab.values()) == list(range(tokenizer.BPE_TOKEN_COUNT))
    assert vocab["!"] == 0 and vocab["Ġ"] == 220 and vocab["hello"] == 14990
    lines = (default_model_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2"
    assert lines[1:4] == ["Ġ Ġ", "ĠĠ ĠĠ", "i n"]
    merges = lines[1:]
    assert len(merges) == tokenizer.BPE_TOKEN_COUNT - 256
    tokens_by_rank = list(vocab)
    for rank, merge in enumerate(merges, start=256):  # each merge creates the token of the next rank
        left, right = merge.split(" ")
        assert vocab[left] < rank and vocab[right] < rank and left + right == tokens_by_rank[rank]


def test_tokenizer_config_files(default_model_dir):
    config = json.loads((default_model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert (config["eos_token"], config["pad_token"], config["bos_token"]) == ("<|im_end|>", "<|endoftext|>", None)
    assert config["model_max_length"] == 131072
    assert config["chat_template"] == tokenizer.CHAT_TEMPLATE
    decoder = config["added_tokens_decoder"]
    assert sorted(map(int, decoder)) == list(range(151643, 151665))
    assert decoder["151657"]["content"] == "<tool_call>" and decoder["151657"]["special"] is False
    special_map = json.loads((default_model_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    entries = [special_map["eos_token"], special_map["pad_token"], *special_map["additional_special_tokens"]]
    assert all(entry["lstrip"] is False and entry["rstrip"] is False for entry in entries)
    added = json.loads((default_model_dir / "added_tokens.json").read_text(encoding="utf-8"))
    assert added["<|file_sep|>"] == 151664 and len(added) == 22


def test_split_token_uses_only_lower_ranks():
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"bc": 4, b"abc": 5}
    assert tokenizer.split_token(b"abc", ranks, max_rank=5) == [b"ab", b"c"]
    assert tokenizer.split_token(b"abc", ranks, max_rank=4) == [b"ab", b"c"]
    assert tokenizer.split_token(b"abc", ranks, max_rank=3) == [b"a", b"b", b"c"]
    assert tokenizer.recover_merges(ranks) == [(b"a", b"b"), (b"b", b"c"), (b"ab", b"c")]


def test_bytes_to_unicode_is_a_printable_bijection():
    table = tokenizer.bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert all(not character.isspace() for character in table.values())


# ---------------------------------------------------------------- source file, cache, bad inputs


def test_locate_and_verify_the_shipped_tiktoken():
    path = tokenizer.locate_qwen_tiktoken()
    assert path.name == "qwen.tiktoken" and path.stat().st_size == tokenizer.TIKTOKEN_SIZE
    assert tokenizer.verify_tiktoken(path) == tokenizer.TIKTOKEN_SHA256


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(tokenizer, "TIKTOKEN_PACKAGE", "no_such_package_for_qwen_ranks")
    with pytest.raises(ConfigError, match="pip install no_such_package_for_qwen_ranks"):
        tokenizer.locate_qwen_tiktoken()


def test_missing_resource_file_is_reported(monkeypatch):
    monkeypatch.setattr(tokenizer, "TIKTOKEN_RESOURCE", ("resources", "missing.tiktoken"))
    with pytest.raises(ConfigError, match="missing.tiktoken is missing"):
        tokenizer.locate_qwen_tiktoken()


def test_a_different_tiktoken_file_is_rejected(tmp_path):
    edited = tmp_path / "qwen.tiktoken"
    shutil.copyfile(tokenizer.locate_qwen_tiktoken(), edited)
    with edited.open("ab") as handle:
        handle.write(b"IQ== 151643\n")
    with pytest.raises(DataError, match="not the official Qwen qwen.tiktoken") as error:
        tokenizer.verify_tiktoken(edited)
    assert str(edited) in str(error.value)
    with pytest.raises(DataError, match="file not found"):
        tokenizer.write_qwen25_tokenizer(tmp_path / "out", tiktoken_path=tmp_path / "absent.tiktoken")


def test_malformed_rank_line_names_the_line(tmp_path):
    path = tmp_path / "bad.tiktoken"
    path.write_bytes(b"IQ== 0\nIg== 1\nnot-base64!! 2\n")
    with pytest.raises(DataError, match=r"bad.tiktoken:3: expected 'base64\(token bytes\) rank'"):
        tokenizer.read_bpe_ranks(path)
    path.write_bytes(b"IQ== 0\nIg== 5\n")
    with pytest.raises(DataError, match="not the consecutive numbers"):
        tokenizer.read_bpe_ranks(path)


def test_bpe_files_are_cached_by_tiktoken_hash_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "cache"))
    first = tokenizer.write_qwen25_tokenizer(tmp_path / "first")
    cache = tokenizer.bpe_cache_dir(tokenizer.TIKTOKEN_SHA256)
    assert cache.parent == tmp_path / "cache" and (cache / "merges.txt").is_file()

    def must_not_run(ranks):
        raise AssertionError("merges were recomputed although cached")

    with monkeypatch.context() as patch:
        patch.setattr(tokenizer, "recover_merges", must_not_run)
        second = tokenizer.write_qwen25_tokenizer(tmp_path / "second")
    for name in tokenizer.BUILT_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes()

    (cache / "merges.txt").write_text("#version: 0.2\nĠ Ġ\n", encoding="utf-8")  # truncated by accident
    third = tokenizer.write_qwen25_tokenizer(tmp_path / "third")
    assert (third / "merges.txt").read_bytes() == (first / "merges.txt").read_bytes()
    assert (cache / "merges.txt").read_bytes() == (first / "merges.txt").read_bytes()
