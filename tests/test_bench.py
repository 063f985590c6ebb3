"""The benchmarks are not run in CI; their argument parsing is (a typo there would only show on a long run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_throughput_defaults_include_200_clients_at_once():
    args = load("generate_throughput").parse_args([])
    assert args.burst_clients == 200
    assert args.batch_sizes == [1, 8, 32] and args.server_batch_sizes == [1, 16]


def test_generate_throughput_arguments():
    args = load("generate_throughput").parse_args(["--burst-clients", "0", "--server-batch-sizes", "4,8",
                                                   "--shapes", "default"])
    assert args.burst_clients == 0 and args.server_batch_sizes == [4, 8] and args.shapes == "default"
    with pytest.raises(SystemExit):
        load("generate_throughput").parse_args(["--burst-clients", "many"])
