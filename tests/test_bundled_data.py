"""data/ is exactly what data/README.md's commands produce."""

from pathlib import Path

from address_completion.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"


def test_bundled_split_regenerates_byte_for_byte(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--num", "4000", "--seed", "42", "--output", str(pairs)]) == 0
    assert main(["split", str(pairs), "--output", str(tmp_path / "data"), "--seed", "42"]) == 0
    for name in ("train.json", "dev.json", "test.json"):
        assert (tmp_path / "data" / name).read_bytes() == (DATA / name).read_bytes(), name


def test_data_readme_states_the_command_the_test_runs():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert "prepare --num 4000 --seed 42" in readme
    assert "split outputs/pairs.jsonl --output data --seed 42" in readme
