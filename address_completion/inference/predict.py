"""Complete addresses with a model: from arguments, a file, piped stdin, or an interactive prompt.

Inputs: ADDRESS arguments; --input FILE (JSON lines with "src" and optional "tgt", a JSON array, CSV,
or plain text with one address per line); otherwise stdin when it is piped; otherwise a "> " prompt.
The task prefix is added when an address lacks it. Output: one completion per line, --json for JSON
lines {"prompt", "predict"[, "label"]}, or --output FILE.jsonl with {"prompt", "predict", "label"} per
line (LLaMA-Factory's predictions.jsonl). By default the model chooses among the gazetteer's candidate
completions (--decoding constrained, --grounding candidates), so every answer is an existing administrative
chain followed by your own detail, kept as you wrote it (--detail verbatim; --detail clean folds it); --json
and --output add how each answer was made: "decoding", "probability" (among the candidates), "abstained" and
its "reason", and "candidates". An answer that is no current address (empty, 无, the prompt's text, a chain
that does not exist today) is never printed as a completion: the input comes back unchanged, abstained.
--decoding free is plain batched greedy generation, the seed tutorial's behaviour.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from .. import DEFAULT_PROMPT_PREFIX
from .. import files, flags
from ..data import dataio
from ..data.prompt import MAX_INPUT_CHARS, with_prefix
from ..errors import ConfigError, DataError
from ..runtime import logger, setup_runtime
from .address_check import TOO_LONG, address_problem
from .generate import REASON_LOW_CONFIDENCE, Completer, add_decoding_arguments, decoding_options

@dataclass(frozen=True)
class PredictInput:
    """One address to complete, with the expected answer when the input file has one."""

    address: str
    label: str | None = None


def read_input_file(path: str | Path, *, fmt: str | None = None, column: str | None = None) -> list[PredictInput]:
    """Addresses (field ``src``, or the lines of a text file) with ``tgt`` as label when every record has it."""
    path = Path(path)
    if column is not None:
        records = dataio.read_records(path, required=("src",), fmt=fmt, column=column).records
        return [PredictInput(record["src"]) for record in records]
    if path.is_file() and (fmt or dataio.detect_format(path, _head(path))) == "text":
        return [PredictInput(record["src"]) for record in dataio.read_records(path, required=("src",), fmt="text").records]
    try:
        records = dataio.read_records(path, required=("src", "tgt"), fmt=fmt).records
    except DataError as error:
        message = str(error)
        if "'tgt'" not in message or not ("missing field" in message or "no column" in message):
            raise
        records = dataio.read_records(path, required=("src",), fmt=fmt).records  # no labels: predict only
    return [PredictInput(record["src"], record.get("tgt")) for record in records]


def _head(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.read(4096).decode("utf-8", errors="replace")


def check_lengths(inputs: list[PredictInput], limit: int, source: str | None) -> None:
    """Refuse, before any model loads, an address longer than ``limit`` characters, or one with no letter or
    digit ([], 【】, --): nothing to complete, and the model's answer to it is noise (an empty answer here).

    Raises ConfigError naming the ADDRESS argument (``source`` None) or DataError naming the file (or
    ``<stdin>``) and the record number (1-based, blank lines of text input not counted)."""
    for number, item in enumerate(inputs, 1):
        problem = address_problem(item.address, limit)
        if problem is not None:
            if problem.kind == TOO_LONG:
                message = f"address {problem.phrase} (--max-input-chars): give one postal address per record"
            else:
                message = f"{item.address!r} {problem.phrase}; give a postal address"
            if source is None:
                raise ConfigError(f"ADDRESS argument {number}: {message}")
            raise DataError(f"record {number}: {message}", source)


def undecodable(text: str) -> str | None:
    """Where ``text`` holds bytes that were not UTF-8 (Python keeps them as lone surrogates when it decodes
    arguments and piped input with surrogateescape), as "byte N" (1-based); None when it is clean text."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            return f"byte {len(text[:index].encode('utf-8', 'surrogateescape')) + 1}"
    return None


def read_lines(stream: TextIO) -> list[PredictInput]:
    """Non-empty lines of a text stream, one address each. DataError naming ``<stdin>`` and the line for a line
    that is not UTF-8 (before any model loads: the tokenizer cannot encode it)."""
    raw = getattr(stream, "buffer", None)  # the bytes, when there are any: decoded per line to name the bad one
    lines = (line.decode("utf-8", "surrogateescape") for line in raw) if raw is not None else stream
    inputs = []
    for number, line in enumerate(lines, 1):
        where = undecodable(line)
        if where is not None:
            raise DataError(f"invalid UTF-8 at {where} of the line; pipe UTF-8 text", "<stdin>", number)
        if line.strip():
            inputs.append(PredictInput(line.strip()))
    return inputs


def prediction_records(inputs: list[PredictInput], predictions: list[Any],
                       prefix: str = DEFAULT_PROMPT_PREFIX) -> list[dict]:
    """{"prompt", "predict", "label"} per input (+ generate.Completion.details() when predictions are
    Completions); prompt is the address with the task prefix (without the grounding lines)."""
    records = []
    for item, predicted in zip(inputs, predictions):
        text = predicted if isinstance(predicted, str) else predicted.text
        record = {"prompt": with_prefix(item.address, prefix), "predict": text, "label": item.label}
        if not isinstance(predicted, str):
            record.update(predicted.details())
        records.append(record)
    return records


def print_predictions(records: Iterable[dict], *, as_json: bool, out: TextIO) -> None:
    for record in records:
        if as_json:
            shown = {key: value for key, value in record.items() if key != "label" or value is not None}
            out.write(dataio.json_line(shown))
        else:  # one answer per line, whatever the model generated
            out.write(" ".join(record["predict"].splitlines()) + "\n")
    out.flush()


def interactive_loop(completer: Completer, *, as_json: bool, prompt: str = "> ", stdin: TextIO | None = None,
                     out: TextIO | None = None, max_input_chars: int = MAX_INPUT_CHARS) -> None:
    """Read one address per line until EOF (Ctrl-D), Ctrl-C, 'exit' or 'quit'; a line longer than
    ``max_input_chars`` gets a message on stderr and the prompt again."""
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if out is None else out
    while True:
        out.write(prompt)
        out.flush()
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            line = ""
        if not line or line.strip() in ("exit", "quit"):
            out.write("\n" if not line else "")
            return
        if not line.strip():
            continue
        where = undecodable(line)
        if where is not None:
            print(f"error: invalid UTF-8 at {where} of the line; type UTF-8 text", file=sys.stderr)
            continue
        inputs = [PredictInput(line.strip())]
        problem = address_problem(inputs[0].address, max_input_chars)
        if problem is not None:
            hint = " (--max-input-chars)" if problem.kind == TOO_LONG else "; type a postal address"
            print(f"error: the line {problem.phrase}{hint}", file=sys.stderr)
            continue
        print_predictions(prediction_records(inputs, completer.complete_detailed([line.strip()]), completer.prefix),
                          as_json=as_json, out=out)


def collect_inputs(args: argparse.Namespace, stdin: TextIO) -> list[PredictInput] | None:
    """Addresses from arguments, --input or piped stdin; None means: ask interactively."""
    if args.addresses and args.input:
        raise ConfigError("give addresses either as arguments or with --input, not both")
    if args.addresses:
        for position, address in enumerate(args.addresses, 1):
            if not address.strip():
                raise ConfigError(f"ADDRESS argument {position} is {'empty' if not address else 'blank'}; give a "
                                  "non-empty address")
            where = undecodable(address)
            if where is not None:
                raise ConfigError(f"ADDRESS argument {position} is not UTF-8 text (invalid UTF-8 at {where}); give "
                                  "the address in UTF-8")
        return [PredictInput(address) for address in args.addresses]
    if args.input:
        return read_input_file(args.input, fmt=args.input_format, column=args.column)
    if not stdin.isatty():
        return read_lines(stdin)
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("addresses", nargs="*", metavar="ADDRESS", help="addresses to complete")
    parser.add_argument("--model", required=True, type=flags.user_path, help="model folder (merged, or the base with --lora-path), .gguf file or hub name")
    parser.add_argument("--lora-path", "--lora_path", default=None, type=flags.user_path, help="unmerged LoRA adapter folder to apply to --model")
    parser.add_argument("--input", default=None, type=flags.user_path, help="file of addresses: JSON lines with src [and tgt], JSON, CSV "
                                                      "or plain text (one per line)")
    parser.add_argument("--input-format", "--input_format", default=None, choices=dataio.FORMATS,
                        help="format of --input (default: from the extension)")
    parser.add_argument("--column", default=None, help="CSV column that holds the address")
    parser.add_argument("--output", default=None, type=flags.user_path, help="write {prompt, predict, label} JSON lines here")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    parser.add_argument("--json", action="store_true", help="print JSON lines {prompt, predict, decoding, probability, abstained, "
                             "reason, candidates, more_candidates} instead of text")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=16, help="addresses decoded together")
    parser.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=64, help="upper bound on generated tokens")
    parser.add_argument("--max-input-chars", "--max_input_chars", type=int, default=MAX_INPUT_CHARS,
                        help="refuse longer addresses (serve's --max-input-chars, same default)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                        help="where the model runs: gpu, cpu, or auto (a GPU when Paddle sees one, else the CPU)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (CPU uses float32)")
    add_decoding_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.output is not None:  # --output "" (an unset variable) is refused by the checks, not ignored
        with files.output_lock(args.output, "--output"):  # one run per output file at a time
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.max_input_chars < 1:
        raise ConfigError(f"--max-input-chars must be at least 1, got {args.max_input_chars}")
    options = decoding_options(args)
    if args.output is not None:
        files.check_apart({"--output": args.output},
                           {"--model": args.model, "--lora-path": args.lora_path, "--input": args.input})
        files.check_output_file(args.output, args.force)
    inputs = collect_inputs(args, sys.stdin)
    if inputs is not None and not inputs:
        raise DataError("no addresses to complete", args.input or "<stdin>")
    if inputs:
        check_lengths(inputs, args.max_input_chars, None if args.addresses else (args.input or "<stdin>"))
    runtime = setup_runtime(device=args.device, dtype=args.dtype, model=args.model)
    completer = Completer.load(args.model, lora_path=args.lora_path, dtype=runtime.dtype,
                               max_new_tokens=args.max_new_tokens, **options)
    if inputs is None:
        print("type an address and press Enter (Ctrl-D or 'quit' to stop)", file=sys.stderr)
        interactive_loop(completer, as_json=args.json, max_input_chars=args.max_input_chars)
        return 0
    predictions = completer.complete_detailed([item.address for item in inputs], batch_size=args.batch_size,
                                              progress=bool(args.input))
    records = prediction_records(inputs, predictions, completer.prefix)
    if args.output:
        count = dataio.write_jsonl(args.output, records, overwrite=args.force)
        logger.info("wrote %d predictions to %s", count, args.output)
    else:
        print_predictions(records, as_json=args.json, out=sys.stdout)
    warn_abstentions(records, args.min_confidence)
    return 0


def warn_abstentions(records: Sequence[dict[str, Any]], min_confidence: float) -> None:
    """Plain output shows an abstained input unchanged: say so, and why (each record's ``reason``, counted), where
    a person reads it."""
    from collections import Counter

    abstained = [record for record in records if record.get("abstained")]
    if not abstained:
        return
    counts = Counter((record.get("reason") or "no reason given", record.get("decoding")) for record in abstained)
    reasons = [f"{count} {reason}" + (f" {min_confidence:g}" if reason == REASON_LOW_CONFIDENCE else "")
               + (f" ({decoding})" if decoding else "") for (reason, decoding), count in counts.items()]
    logger.warning("%d of %d address(es) returned unchanged (abstained: %s)", len(abstained), len(records),
                   "; ".join(reasons))
