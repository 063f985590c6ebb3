"""dataio: every input format, every class of bad record, atomic writes, overwrite protection."""

from __future__ import annotations

import json
import os
from pathlib import Path
import stat

import pytest

from address_completion.data.dataio import json_line, read_records, write_json, write_jsonl
from address_completion.files import atomic_write, atomic_write_text, check_writable
from address_completion.errors import ConfigError, DataError, OutputExistsError

SRC = "补齐五级行政地址: 碑林区扬子江南路467-6号"
TGT = "陕西省西安市碑林区扬子江南路467-6号"


def good_line(index: int) -> str:
    return json.dumps({"src": f"{SRC}{index}", "tgt": f"{TGT}{index}"}, ensure_ascii=False)


def write_lines(path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("\n".join(lines).encode(encoding) + b"\n")


# ---------------------------------------------------------------- JSON lines


def test_reads_seed_tutorial_jsonl(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"src":"补齐五级行政地址: 碑林区扬子江南路467-6号","tgt":"陕西省西安市碑林区扬子江南路467-6号"}\n',
                    encoding="utf-8")
    result = read_records(path)
    assert result.records == [{"src": SRC, "tgt": TGT}]
    assert result.skipped == 0


def test_broken_line_7_is_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [good_line(index) for index in range(10)]
    lines[6] = '{"src": "碑林区", "tgt": '  # line 7
    write_lines(path, lines)
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert caught.value.line == 7
    assert f"{path}:7:" in str(caught.value)
    assert "broken JSON" in str(caught.value)


def test_an_unterminated_string_reads_as_one_sentence(tmp_path):
    """json says "Unterminated string starting at"; our place after it must not double the "at" (every reader:
    JSONL, JSON array, train config and serve's body share dataio.json_error)."""
    path = tmp_path / "pairs.jsonl"
    write_lines(path, [good_line(0), "{\"src\": \"碑林区扬子江南路"])
    with pytest.raises(DataError, match=r"pairs.jsonl:2: broken JSON \(Unterminated string starting at column 9\)$"):
        read_records(path)
    array = tmp_path / "pairs.json"
    array.write_text('[{"src": "a", "tgt": "b"},\n {"src": "碑林区]', encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.json:2: broken JSON \(Unterminated string starting at column 10\)$"):
        read_records(array)


def test_json_nested_past_the_recursion_limit_is_a_broken_line(tmp_path):
    """[[[[… past Python's recursion limit raised RecursionError (a traceback) instead of naming the line."""
    deep = "[" * 5000 + "]" * 5000
    path = tmp_path / "pairs.jsonl"
    write_lines(path, [good_line(0), deep])
    with pytest.raises(DataError, match=r"pairs.jsonl:2: broken JSON \(nested deeper than Python's JSON parser "
                                        r"can follow\)$"):
        read_records(path)
    array = tmp_path / "pairs.json"
    array.write_text(deep, encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.json:1: broken JSON \(nested deeper"):
        read_records(array)


def test_skip_bad_counts_the_broken_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [good_line(index) for index in range(10)]
    lines[6] = "{not json"
    write_lines(path, lines)
    result = read_records(path, skip_bad=True)
    assert result.skipped == 1
    assert len(result.records) == 9
    assert result.skip_reasons[0].startswith(f"{path}:7:")


BAD_RECORDS = {
    "broken JSON": '{"src": "a" "tgt": "b"}',
    "missing field 'tgt'": '{"src": "碑林区"}',
    "field 'src' is empty": '{"src": "", "tgt": "陕西省"}',
    "field 'tgt' is empty": '{"src": "碑林区", "tgt": "   "}',
    "field 'tgt' must be a string, got number": '{"src": "碑林区", "tgt": 467}',
    "field 'src' must be a string, got null": '{"src": null, "tgt": "陕西省"}',
    "field 'tgt' must be a string, got array": '{"src": "碑林区", "tgt": ["陕西省"]}',
    "expected an object with fields src, tgt, got array": '["碑林区", "陕西省"]',
    "unpaired surrogate": '{"src": "碑林区", "tgt": "\\ud800"}',
}


@pytest.mark.parametrize("reason", BAD_RECORDS)
def test_each_bad_record_class_names_file_and_line(tmp_path, reason):
    path = tmp_path / "pairs.jsonl"
    write_lines(path, [good_line(0), good_line(1), BAD_RECORDS[reason], good_line(3)])
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert caught.value.path == str(path)
    assert caught.value.line == 3
    assert reason in str(caught.value)
    result = read_records(path, skip_bad=True)
    assert (result.skipped, len(result.records)) == (1, 3)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(good_line(0).encode() + b"\n" + b'{"src": "\xe7\xa2", "tgt": "x"}\n' + good_line(2).encode())
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert caught.value.line == 2
    assert "invalid UTF-8" in str(caught.value)
    result = read_records(path, skip_bad=True)
    assert result.skipped == 1
    assert [record["tgt"] for record in result.records] == [f"{TGT}0", f"{TGT}2"]


def test_gbk_file_is_reported_as_not_utf8(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_lines(path, [good_line(0)], encoding="gbk")
    with pytest.raises(DataError, match=r":1: invalid UTF-8.*must be UTF-8"):
        read_records(path)


def test_utf16_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(good_line(0).encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        read_records(path)


def test_byte_order_mark_and_crlf_are_handled(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (good_line(0) + "\r\n\r\n" + good_line(1) + "\r\n").encode())
    assert [record["tgt"] for record in read_records(path).records] == [f"{TGT}0", f"{TGT}1"]


def test_values_are_stripped_and_extra_fields_dropped(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_lines(path, [json.dumps({"id": 1, "src": "  碑林区 ", "tgt": "陕西省西安市碑林区\t"})])
    assert read_records(path).records == [{"src": "碑林区", "tgt": "陕西省西安市碑林区"}]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "nope.jsonl")


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_lines(path, [good_line(0)])
    with pytest.raises(DataError, match="unknown format 'xml'"):
        read_records(path, fmt="xml")


# ---------------------------------------------------------------- JSON array


def test_json_array(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"src": SRC, "tgt": TGT}], ensure_ascii=False, indent=2), encoding="utf-8")
    assert read_records(path).records == [{"src": SRC, "tgt": TGT}]


def test_json_array_element_error_names_its_line(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text('[\n  {"src": "a", "tgt": "b"},\n\n  {"src": "c",\n   "tgt": 5},\n  {"src": "e", "tgt": "f"}\n]\n',
                    encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert caught.value.line == 4  # where element 1 starts
    assert "array element 1: field 'tgt' must be a string, got number" in str(caught.value)
    result = read_records(path, skip_bad=True)
    assert (result.skipped, [record["src"] for record in result.records]) == (1, ["a", "e"])


def test_broken_json_array_names_the_line(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text('[\n {"src": "a", "tgt": "b"},\n {"src": "c" "tgt": "d"}\n]\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_records(path, skip_bad=True)  # a broken array cannot be skipped around
    assert caught.value.line == 3


def test_invalid_utf8_in_json_array_names_the_line_even_with_skip_bad(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_bytes(b'[\n {"src": "a", "tgt": "b"},\n {"src": "\xff", "tgt": "d"}\n]\n')
    with pytest.raises(DataError) as caught:
        read_records(path, skip_bad=True)
    assert caught.value.line == 3
    assert "invalid UTF-8" in str(caught.value)


def test_json_object_instead_of_array(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text('[1, 2]', encoding="utf-8")
    with pytest.raises(DataError, match="array element 0: expected an object"):
        read_records(path)


def test_dot_json_holding_json_lines_is_detected(tmp_path):
    path = tmp_path / "train.json"  # run_finetune's layout: JSON lines despite the extension
    write_lines(path, [good_line(0), good_line(1)])
    assert len(read_records(path).records) == 2


def test_unknown_extension_is_sniffed(tmp_path):
    jsonl, array, text = tmp_path / "a.data", tmp_path / "b.data", tmp_path / "c.data"
    write_lines(jsonl, [good_line(0)])
    array.write_text(json.dumps([{"src": "a", "tgt": "b"}]), encoding="utf-8")
    write_lines(text, [TGT])
    assert len(read_records(jsonl).records) == 1
    assert read_records(array).records == [{"src": "a", "tgt": "b"}]
    assert read_records(text, required=("tgt",)).records == [{"tgt": TGT}]


# ---------------------------------------------------------------- plain text


def test_plain_text_one_address_per_line(tmp_path):
    path = tmp_path / "addresses.txt"
    path.write_bytes(b"\xef\xbb\xbf" + f"{TGT}\n\n  北京市朝阳区建国路88号  \r\n".encode())
    result = read_records(path, required=("tgt",))
    assert result.records == [{"tgt": TGT}, {"tgt": "北京市朝阳区建国路88号"}]


def test_plain_text_cannot_provide_pairs(tmp_path):
    path = tmp_path / "addresses.txt"
    write_lines(path, [TGT])
    with pytest.raises(DataError, match="cannot provide the fields src, tgt"):
        read_records(path)


def test_plain_text_invalid_utf8(tmp_path):
    path = tmp_path / "addresses.txt"
    path.write_bytes(TGT.encode() + b"\n\xc3\x28\n" + TGT.encode())
    with pytest.raises(DataError) as caught:
        read_records(path, required=("tgt",))
    assert caught.value.line == 2
    result = read_records(path, required=("tgt",), skip_bad=True)
    assert (result.skipped, len(result.records)) == (1, 2)


# ---------------------------------------------------------------- CSV


def test_csv_with_named_column(tmp_path):
    path = tmp_path / "addresses.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"id,address\n1,{TGT}\n2,\"北京市朝阳区建国路88号, 1号楼\"\n".encode())
    result = read_records(path, required=("tgt",), column="address")
    assert result.records == [{"tgt": TGT}, {"tgt": "北京市朝阳区建国路88号, 1号楼"}]


def test_csv_pairs_and_tsv(tmp_path):
    csv_path, tsv_path = tmp_path / "pairs.csv", tmp_path / "pairs.tsv"
    csv_path.write_text(f"src,tgt\n{SRC},{TGT}\n", encoding="utf-8")
    tsv_path.write_text(f"tgt\tsrc\n{TGT}\t{SRC}\n", encoding="utf-8")
    assert read_records(csv_path).records == [{"src": SRC, "tgt": TGT}]
    assert read_records(tsv_path).records == [{"src": SRC, "tgt": TGT}]


def test_csv_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "addresses.csv"
    path.write_text(f"id,full_address\n1,{TGT}\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_records(path, required=("tgt",), column="address")
    message = str(caught.value)
    assert "no column 'address'" in message
    assert "'id', 'full_address'" in message
    with pytest.raises(DataError, match="--column"):
        read_records(path, required=("tgt",))


def test_csv_bad_rows_name_their_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(f"src,tgt\n{SRC},{TGT}\n\"多行\n输入\",{TGT}\n碑林区,\nonly-one-cell\n".encode()
                     + b"\xff,x\n" + f"{SRC},{TGT}\n".encode())
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert caught.value.line == 5
    assert "field 'tgt' is empty" in str(caught.value)
    result = read_records(path, skip_bad=True)
    assert result.skipped == 3  # empty tgt (line 5), one cell (line 6), invalid UTF-8 (line 7)
    assert [reason.split(": ")[0] for reason in result.skip_reasons] == [f"{path}:5", f"{path}:6", f"{path}:7"]
    assert [record["src"] for record in result.records] == [SRC, "多行\n输入", SRC]


def test_csv_row_with_more_cells_than_the_header_names_its_line(tmp_path):
    """An unquoted comma inside an address shifts the columns: refused, not silently cut off."""
    path = tmp_path / "pairs.csv"
    path.write_text(f"src,tgt\n{SRC},{TGT},\n{SRC},陕西省,西安市碑林区\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.csv:3: row has 3 cells, the header has 2 \(a separator inside an "
                                        r"address\? quote that cell\)"):
        read_records(path)
    result = read_records(path, skip_bad=True)  # line 2's trailing empty cell (spreadsheet export) is harmless
    assert result.records == [{"src": SRC, "tgt": TGT}] and result.skipped == 1
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text(f"src\ttgt\n{SRC}\t{TGT}\tx\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.tsv:2: row has 3 cells"):
        read_records(tsv)


def test_empty_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected a header row"):
        read_records(path)


def test_csv_column_with_pairs_is_refused(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(f"address\n{TGT}\n", encoding="utf-8")
    with pytest.raises(DataError, match="--column names one column"):
        read_records(path, column="address")


# ---------------------------------------------------------------- writing


def test_atomic_write_keeps_old_file_when_writer_raises(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("old content\n", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write("half of the new con")
            raise RuntimeError("writer died midway")
    assert path.read_text(encoding="utf-8") == "old content\n"
    assert os.listdir(tmp_path) == ["train.json"]  # no temporary file left behind


def test_write_jsonl_keeps_old_file_when_records_fail(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("old\n", encoding="utf-8")

    def records():
        yield {"src": "a", "tgt": "b"}
        raise ValueError("generator failed")

    with pytest.raises(ValueError):
        write_jsonl(path, records())
    assert path.read_text(encoding="utf-8") == "old\n"


def test_atomic_write_replaces_and_creates_folders(tmp_path):
    path = tmp_path / "new" / "folder" / "out.txt"
    atomic_write_text(path, "第一\n")
    atomic_write_text(path, "第二\n")
    assert path.read_bytes() == "第二\n".encode()
    with atomic_write(path, "wb") as handle:
        handle.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError):
        with atomic_write(path, "a"):
            pass


def test_atomic_write_permissions_follow_umask_and_replaced_file(tmp_path):
    reference = tmp_path / "reference.txt"
    reference.write_text("x")  # what a plain open() creates under the current umask
    created = tmp_path / "created.txt"
    atomic_write_text(created, "x")
    assert stat.S_IMODE(created.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    os.chmod(created, 0o600)
    atomic_write_text(created, "y")
    assert stat.S_IMODE(created.stat().st_mode) == 0o600


def test_write_jsonl_round_trip_and_stable_bytes(tmp_path):
    path = tmp_path / "pairs.jsonl"
    records = [{"src": SRC, "tgt": TGT}, {"src": "朝阳区", "tgt": "北京市朝阳区"}]
    assert write_jsonl(path, records) == 2
    assert read_records(path).records == records
    assert path.read_text(encoding="utf-8").splitlines()[0] == json_line(records[0]).rstrip("\n")
    assert "陕西省" in json_line(records[0])  # no \\u escapes
    write_json(tmp_path / "obj.json", {"名": [1]})
    assert json.loads((tmp_path / "obj.json").read_text(encoding="utf-8")) == {"名": [1]}


def test_check_writable(tmp_path):
    existing = tmp_path / "train.json"
    existing.write_text("x")
    with pytest.raises(OutputExistsError, match="--force"):
        check_writable(existing, force=False)
    assert check_writable(existing, force=True) == existing
    assert check_writable(tmp_path / "missing.json", force=False) == tmp_path / "missing.json"
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    assert check_writable(empty_folder, force=False) == empty_folder
    with pytest.raises(OutputExistsError):
        check_writable(tmp_path, force=False)  # not empty


def test_atomic_folder_replaces_only_on_success(tmp_path):
    from address_completion.files import atomic_folder

    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as staging:
            (staging / "config.json").write_text("new")
            raise RuntimeError("save failed")
    assert (target / "config.json").read_text() == "old"
    with atomic_folder(target) as staging:
        (staging / "config.json").write_text("new")
    assert (target / "config.json").read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # no staging or old folder left


def test_staged_file_publishes_only_on_success(tmp_path):
    from address_completion.files import current_umask, staged_file

    target = tmp_path / "model.gguf"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with staged_file(target) as staged:
            staged.write_bytes(b"half")
            (staged.parent / "scratch").mkdir()  # the caller's intermediate files live beside it
            raise RuntimeError("verification failed")
    assert target.read_bytes() == b"old"
    with pytest.raises(FileNotFoundError):  # a body that wrote nothing publishes nothing
        with staged_file(target):
            pass
    assert target.read_bytes() == b"old"
    with staged_file(target) as staged:
        descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT, 0o600)  # a private file, as gguf-py may write
        os.write(descriptor, b"new")
        os.close(descriptor)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current_umask()
    assert [path.name for path in tmp_path.iterdir()] == ["model.gguf"]  # no staging folder left


@pytest.mark.parametrize("overwrite", [True, False])
def test_atomic_files_refuses_one_path_twice(tmp_path, overwrite):
    from address_completion.files import atomic_files

    paths = [tmp_path / "a.json", tmp_path / "." / "a.json"]  # the second silently replaced the first
    with pytest.raises(ValueError, match=r"a path is given twice"):
        with atomic_files(paths, overwrite=overwrite) as handles:
            handles[0].write("first\n")
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_publish_all_or_none(tmp_path):
    """split's three files: a failure at the last rename takes the first two back (a split is never two runs')."""
    from address_completion.files import atomic_files

    paths = [tmp_path / name for name in ("train.json", "dev.json", "test.json")]
    for path in paths[:2]:
        path.write_text("old " + path.name)
    paths[2].mkdir()  # something the last rename cannot replace
    with pytest.raises(OSError):
        with atomic_files(paths) as handles:
            for handle, path in zip(handles, paths):
                handle.write("new " + path.name)
    assert [path.read_text() for path in paths[:2]] == ["old train.json", "old dev.json"]
    paths[2].rmdir()
    with pytest.raises(OutputExistsError, match="appeared while this command ran"):
        with atomic_files(paths, overwrite=False) as handles:
            for handle in handles:
                handle.write("mine")
            paths[2].write_text("another run's")  # written meanwhile
    assert [path.read_text() for path in paths] == ["old train.json", "old dev.json", "another run's"]
    with pytest.raises(RuntimeError):
        with atomic_files(paths) as handles:
            handles[0].write("half")
            raise RuntimeError("interrupted")
    assert paths[0].read_text() == "old train.json"
    with atomic_files(paths) as handles:
        for handle, path in zip(handles, paths):
            handle.write("new " + path.name)
    assert [path.read_text() for path in paths] == ["new train.json", "new dev.json", "new test.json"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dev.json", "test.json", "train.json"]


def test_check_model_folder_never_replaces_a_non_model_folder(tmp_path):
    from address_completion.files import check_model_folder

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        check_model_folder(tmp_path, force=False)
    with pytest.raises(ConfigError, match="no config.json"):
        check_model_folder(tmp_path, force=True)


# ---------------------------------------------------------------- model folders: umask, stale staging, overlap


def dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=120)
    return process.pid


def test_atomic_folder_gives_files_the_umask_mode(tmp_path):
    from address_completion.files import atomic_folder, current_umask

    with atomic_folder(tmp_path / "model") as staging:
        descriptor, name = __import__("tempfile").mkstemp(dir=staging)  # how safetensors writes: mode 0600
        os.close(descriptor)
        (staging / "sub").mkdir(mode=0o700)
    mask = current_umask()
    written = tmp_path / "model" / os.path.basename(name)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "model" / "sub").stat().st_mode) == 0o777 & ~mask


def test_staging_left_by_a_killed_run_is_cleaned_by_the_next_run(tmp_path):
    from address_completion.files import atomic_folder

    pid = dead_pid()
    stale = tmp_path / f".model.staging-{pid}-0123abcd"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half written")
    alive = tmp_path / f".model.staging-{os.getpid()}-89abcdef"  # a run still going: not ours to remove
    alive.mkdir()
    with atomic_folder(tmp_path / "model") as staging:
        (staging / "config.json").write_text("{}")
    assert sorted(path.name for path in tmp_path.iterdir()) == [alive.name, "model"]


def test_an_earlier_result_moved_aside_by_a_killed_run_is_put_back(tmp_path):
    from address_completion.files import clean_stale_siblings

    aside = tmp_path / f".model.old-{dead_pid()}-0123abcd"
    aside.mkdir()
    (aside / "config.json").write_text('{"earlier": true}')
    clean_stale_siblings(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text()) == {"earlier": True}
    assert not aside.exists()


@pytest.mark.parametrize("output, relation", [
    ("in", "is the same path as"), ("in/sub/out", "lies inside"), (".", "contains"), ("in-other", None)])
def test_check_apart(tmp_path, output, relation):
    from address_completion.files import check_apart

    (tmp_path / "in" / "sub").mkdir(parents=True)
    outputs, inputs = {"--output": tmp_path / output}, {"--model": tmp_path / "in", "--hub": "Qwen/not-on-disk"}
    if relation is None:
        check_apart(outputs, inputs)
        return
    with pytest.raises(ConfigError, match=f"--output .* {relation} --model .*with --force or not"):
        check_apart(outputs, inputs)


def test_check_output_file_refuses_a_folder_and_a_file_parent(tmp_path):
    from address_completion.files import check_output_file

    with pytest.raises(ConfigError, match="is a folder; name a file"):
        check_output_file(tmp_path, force=True, flag="--output")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, so no file can be written below it"):
        check_output_file(tmp_path / "file" / "out.jsonl", force=False)
    assert check_output_file(tmp_path / "new" / "out.jsonl", force=False) == tmp_path / "new" / "out.jsonl"


def test_an_empty_output_is_named_empty_not_the_current_folder(capsys):
    from address_completion.cli import main
    from address_completion.files import check_output_file

    with pytest.raises(ConfigError, match=r"^--output is empty; name a file to write \(e.g. pairs.jsonl\)$"):
        check_output_file("", force=False, example="pairs.jsonl")
    assert main(["prepare", "--output", "", "--num", "5"]) == 2
    assert capsys.readouterr().err.strip() == "error: --output is empty; name a file to write (e.g. pairs.jsonl)"


def test_a_file_where_a_model_folder_goes_is_refused_without_suggesting_force(tmp_path):
    """--force could not help (a file is never replaced by a model folder), so the message must not offer it."""
    from address_completion.files import check_model_folder

    existing = tmp_path / "model"
    existing.write_text("notes", encoding="utf-8")
    for force in (False, True):
        with pytest.raises(ConfigError, match=r"^--output_path .*model is a file; it must name a folder$"):
            check_model_folder(existing, force, flag="--output_path")
    assert existing.read_text(encoding="utf-8") == "notes"


def test_without_overwrite_a_file_that_appeared_meanwhile_is_kept(tmp_path):
    """Two runs writing the same output: the one that finishes second must not replace the first's result
    (each checked before its work that the output was free)."""
    path = tmp_path / "pairs.jsonl"
    with pytest.raises(OutputExistsError, match=r"pairs.jsonl already exists; it appeared while this command ran"):
        with atomic_write(path, overwrite=False) as handle:
            handle.write("second run\n")
            path.write_text("first run\n", encoding="utf-8")  # the other run finishes first
    assert path.read_text(encoding="utf-8") == "first run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]  # no temporary file left
    other = tmp_path / "new.jsonl"
    assert write_jsonl(other, [{"a": 1}], overwrite=False) == 1 and other.read_text(encoding="utf-8") == '{"a": 1}\n'
    with pytest.raises(OutputExistsError):
        write_jsonl(other, [{"a": 2}], overwrite=False)
    write_jsonl(other, [{"a": 3}])  # --force
    assert other.read_text(encoding="utf-8") == '{"a": 3}\n'


def test_without_overwrite_a_folder_filled_meanwhile_is_kept(tmp_path):
    from address_completion.files import atomic_folder

    path = tmp_path / "model"
    with pytest.raises(OutputExistsError, match="appeared while this command ran"):
        with atomic_folder(path, overwrite=False) as staging:
            (staging / "config.json").write_text("{}", encoding="utf-8")
            path.mkdir()
            (path / "config.json").write_text('{"first": 1}', encoding="utf-8")
    assert (path / "config.json").read_text(encoding="utf-8") == '{"first": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_output_folder_below_a_read_only_folder_is_refused_before_work(tmp_path, monkeypatch):
    """Like output files: merge/export/build-model would otherwise do all the work and fail at the last rename.
    (os.access is consulted so that the check also holds where the tests run as root, who may write anywhere.)"""
    from address_completion.files import check_model_folder, check_output_folder

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == locked
                        else real_access(path, mode, **kw))
    for check in (lambda: check_output_folder(locked / "new" / "model", "--output_path"),
                  lambda: check_model_folder(locked / "model", False, flag="--output")):
        with pytest.raises(ConfigError, match=rf"{locked}.*: the folder {locked} is not writable$"):
            check()
    assert check_output_folder(tmp_path / "free" / "model") == tmp_path / "free" / "model"


def test_csv_quote_never_closed_names_the_record_instead_of_swallowing_the_rest(tmp_path):
    """Python's lenient csv reads everything after a stray opening quote as one cell: the rows after it vanished
    into one 'address' and the run succeeded."""
    path = tmp_path / "pairs.csv"
    path.write_text(f"src,tgt\n{SRC},{TGT}\n\"海淀区,北京市海淀区\n天河区,广东省广州市天河区\n", encoding="utf-8")
    with pytest.raises(DataError, match=r'pairs.csv:3: malformed CSV: a quoted cell opened in this record is never '
                                        r'closed \(a stray " \?\)'):
        read_records(path)
    quoted = tmp_path / "quoted.csv"  # a properly quoted multi-line cell is still one record
    quoted.write_text(f'src,tgt\n"多行\n输入",{TGT}\n', encoding="utf-8")
    assert read_records(quoted).records == [{"src": "多行\n输入", "tgt": TGT}]


@pytest.mark.parametrize("given", ["", ".", ".."])
def test_a_model_folder_path_without_a_name_of_its_own_is_refused(given, tmp_path, monkeypatch):
    """build-model --output "" (or .) was a ValueError traceback from atomic_folder's sibling name."""
    from address_completion.files import check_model_folder

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"--output '\.*' names no folder of its own \(empty, \. or \.\.\)"):
        check_model_folder(given, force=True)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("argv", [["prepare", "--num", "5", "--output", "/proc/x.jsonl"],
                                  ["split", "data/test.json", "--output", "/proc/xx"]])
def test_an_output_on_a_pseudo_file_system_is_one_line_even_as_root(argv, capsys, monkeypatch):
    """As root, os.access says /proc is writable; prepare and split then ended in a FileNotFoundError traceback
    after the work. The folder is tried for real before any work."""
    from address_completion import cli

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert cli.main(argv) == 2
    assert "the folder /proc is not writable" in capsys.readouterr().err
