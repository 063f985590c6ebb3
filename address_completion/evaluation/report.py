"""Evaluation outputs: ``report.md`` for people, ``report.json`` for programs, ``comparison.png``.

The chart needs matplotlib (extra ``plot``); without it the report says so and everything else is
written as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from .. import files
from ..data import dataio
from .metrics import LEVELS
from ..runtime import logger

CHART_NAME = "comparison.png"
CHART_METRICS = (("exact", "exact match"), ("province", "province"), ("city", "city"), ("county", "county"),
                 ("town", "town"), ("detail_kept", "detail kept"))
CLASS_LABELS = {"unique_county": "unique county", "ambiguous_county": "ambiguous county", "town_first": "town first",
                "no_admin_token": "no administrative token", "already_full": "already full"}


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def rate_cell(rate: dict[str, Any], *, counts: bool = False) -> str:
    """``92.3% [90.1–94.0]`` (95% Wilson interval), optionally with ``(923/1000)``."""
    low, high = rate["ci95"]
    text = f"{percent(rate['value'])} [{100 * low:.1f}–{100 * high:.1f}]"
    return text + (f" ({rate['count']}/{rate['total']})" if counts else "")


def seconds_cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{1000 * value:.1f} ms" if value < 1 else f"{value:.2f} s"


def cell(text: Any) -> str:
    """Markdown table cell: pipes escaped, line breaks flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip() or " "


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return lines


def scored(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in report["systems"] if entry["status"] == "ok"]


# ---------------------------------------------------------------- markdown


def header_section(report: dict[str, Any]) -> list[str]:
    test = report["test_set"]
    limit = f", limited to the first {test['limit']}" if test.get("limit") else ""
    settings = ", ".join(f"{key}={value!r}" for key, value in report["settings"].items())
    classes = ", ".join(f"{CLASS_LABELS.get(name, name)} {count}" for name, count in test["classes"].items())
    return [f"# {report['title']}", "",
            f"- Test set: `{test['path']}` — {test['size']} items ({test['records_in_file']} in the file{limit}); "
            f"sha256 `{test['sha256'][:16]}…`",
            f"- Input classes: {classes}",
            f"- Settings: {settings}",
            f"- Config: `{report['config']}`; generated {report['generated_at']}", ""]


def coverage_rates(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coverage, accuracy when answered); reports written before abstentions existed count all as answered."""
    exact = metrics["exact"]
    everything = {**exact, "count": exact["total"], "value": 1.0 if exact["total"] else 0.0,
                  "ci95": [1.0, 1.0] if exact["total"] else [0.0, 1.0]}
    return metrics.get("coverage", everything), metrics.get("answered_exact", exact)


def summary_section(report: dict[str, Any]) -> list[str]:
    rows = []
    for entry in scored(report):
        metrics, latency = entry["metrics"], entry["metrics"]["latency"]
        throughput = latency["throughput_per_s"]
        coverage, answered = coverage_rates(metrics)
        name = entry["name"] + (f" (first {entry['limit']} items)" if entry.get("limit") else "")
        rows.append([name, entry["kind"], rate_cell(metrics["exact"], counts=True),
                     rate_cell(coverage, counts=True), rate_cell(answered), rate_cell(metrics["detail_kept"]),
                     rate_cell(metrics["invalid_chain"]), seconds_cell(latency["mean_s"]),
                     "n/a" if throughput is None else f"{throughput:.1f}/s"])
    return ["## Summary", "", *table(["System", "Kind", "Exact match (95% CI)", "Coverage", "Accuracy when answered",
                                      "Detail kept", "Invalid chain", "Latency / address", "Throughput"], rows), "",
            "Exact match counts an abstention (the system declined to answer) as not exact; coverage is the share "
            "answered, accuracy when answered the exact-match rate among those. Invalid chain: answers naming "
            "divisions that do not nest, counted over all items, except chains the expected address names "
            "itself (neither the gazetteer nor the expected answer vouches for a counted one).", "",
            *choices_lines(report)]


def choices_lines(report: dict[str, Any]) -> list[str]:
    """Where constrained decoding left the choice to the model: items with ≥ 2 candidates, exact among them."""
    lines = []
    for entry in scored(report):
        choices = entry["metrics"].get("model_choices")
        if choices:
            lines.append(f"- {entry['name']}: the model chose among ≥ 2 candidates for {choices['chosen']} of "
                         f"{choices['items']} items (exact {rate_cell(choices['exact_when_chosen'], counts=True)} "
                         f"of those); {choices['free_fallback']} had no candidate and were generated freely; the "
                         "rest had one candidate, which the gazetteer alone decides.")
    return ["Constrained decoding:", "", *lines, ""] if lines else []


def prior_section(report: dict[str, Any]) -> list[str]:
    """Model vs prior: exact match on the items with ≥ 2 candidates, where the prior is wrong, and by whether the
    right candidate is the first the prompt lists (the position bias); empty when no item has two candidates."""
    choices = report["test_set"].get("choices")
    rows = []
    for entry in scored(report):
        versus = entry["metrics"].get("versus_prior")
        if versus:
            rows.append([entry["name"], entry["kind"], rate_cell(versus["exact"], counts=True),
                         rate_cell(versus["prior_wrong"], counts=True), rate_cell(versus["listed_first"], counts=True),
                         rate_cell(versus["not_listed_first"], counts=True)])
    if not rows or not choices:
        return []
    return ["## Model vs prior (inputs with ≥ 2 candidates)", "",
            f"{choices['ambiguous']} test items have two or more candidates; the answer is one of them for "
            f"{choices['answer_among_candidates']}, the gazetteer ranks it first (the prior is right) for "
            f"{choices['prior_right']}, and the prompt, which lists candidates by division code, lists it first for "
            f"{choices['listed_first']}.", "",
            *table(["System", "Kind", "Exact (≥ 2 candidates)", "Where the prior is wrong", "Answer listed first",
                    "Answer not listed first"], rows), "",
            "The prior system answers the gazetteer's first-ranked candidate; city-frequency the candidate whose "
            "chain was the answer most often in its training file. A model that only copies the prior scores 0 "
            "where the prior is wrong; one that copies the first listed candidate scores 0 where the answer is not "
            "listed first (position bias). The last three columns count items whose answer is among the candidates.",
            ""]


def levels_section(report: dict[str, Any]) -> list[str]:
    rows = [[entry["name"], *(rate_cell(entry["metrics"]["levels"][level]) for level in LEVELS)]
            for entry in scored(report)]
    return ["## Accuracy per administrative level", "",
            *table(["System", "Province", "City", "County", "Town"], rows), "",
            "A level absent from both the answer and the expected address counts as correct "
            "(municipalities have no city level; most addresses name no town).", ""]


def classes_section(report: dict[str, Any]) -> list[str]:
    systems = scored(report)
    rows = []
    for name, count in report["test_set"]["classes"].items():
        cells = []
        for entry in systems:
            group = entry["metrics"]["by_class"].get(name)
            cells.append(rate_cell(group["exact"]) if group else "n/a")
        rows.append([CLASS_LABELS.get(name, name), count, *cells])
    coverage_rows = []
    for name, count in report["test_set"]["classes"].items():
        cells = []
        for entry in systems:
            group = entry["metrics"]["by_class"].get(name)
            if group:
                coverage, answered = coverage_rates(group)
                cells.append(f"{rate_cell(coverage)} / {rate_cell(answered)}")
            else:
                cells.append("n/a")
        coverage_rows.append([CLASS_LABELS.get(name, name), count, *cells])
    return ["## Exact match by input class", "",
            *table(["Input class", "n", *(entry["name"] for entry in systems)], rows), "",
            "## Coverage / accuracy when answered by input class", "",
            *table(["Input class", "n", *(entry["name"] for entry in systems)], coverage_rows), ""]


def chart_section(report: dict[str, Any]) -> list[str]:
    chart = report.get("files", {}).get("chart")
    if chart:
        return ["## Chart", "", f"![systems compared]({chart})", ""]
    return ["## Chart", "", f"No chart: {report.get('chart_note', 'not drawn')}.", ""]


def errors_section(report: dict[str, Any]) -> list[str]:
    lines = ["## Worst errors", "",
             "Ranked by severity: invalid administrative chain, then wrong answers before abstentions, then "
             "wrong levels (province first), then lost detail. An abstention shows the text returned, marked "
             "(abstained).", ""]
    for entry in scored(report):
        errors = entry["metrics"]["worst_errors"]
        lines += [f"### {entry['name']}", ""]
        if not errors:
            lines += ["No errors." if entry["metrics"]["exact"]["value"] == 1 else "(not listed)", ""]
            continue
        rows = [[error["input"], error["expected"],
                 (error["got"] or "(empty)") + (" (abstained)" if error.get("abstained") else ""),
                 ", ".join(error["wrong_levels"]) or "-",
                 "yes" if error["invalid_chain"] else "", "" if error["detail_kept"] else "lost"]
                for error in errors]
        lines += [*table(["Input", "Expected", "Got", "Wrong levels", "Invalid chain", "Detail"], rows), ""]
    return lines


def unavailable_section(report: dict[str, Any]) -> list[str]:
    missing = [entry for entry in report["systems"] if entry["status"] != "ok"]
    if not missing:
        return []
    return ["## Systems not scored", "", *(f"- **{entry['name']}** ({entry['status']}): {entry['reason']}"
                                           for entry in missing), ""]


def render_markdown(report: dict[str, Any]) -> str:
    lines = header_section(report)
    if scored(report):
        lines += summary_section(report) + prior_section(report) + levels_section(report) + classes_section(report)
        lines += chart_section(report)
        lines += errors_section(report)
    lines += unavailable_section(report)
    lines += ["Metrics: exact match after NFKC/whitespace normalization; levels parsed with the gazetteer "
              "(renamed divisions mapped to current names); 95% Wilson intervals in brackets; latency is a "
              "batch's wall time divided by its size. See docs/evaluation.md.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- chart


def chart_values(entry: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(value, low, high) for each CHART_METRICS column of one system."""
    metrics = entry["metrics"]
    rates = [metrics["exact"], *(metrics["levels"][level] for level in LEVELS), metrics["detail_kept"]]
    return [(rate["value"], rate["ci95"][0], rate["ci95"][1]) for rate in rates]


def write_chart(report: dict[str, Any], path: Path) -> str | None:
    """Grouped bars (systems x metrics) with 95% intervals; returns why it was skipped, or None."""
    systems = scored(report)
    if not systems:
        return "no system was scored"
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[plot]')"
    width = 0.8 / len(systems)
    figure, axes = plt.subplots(figsize=(max(7.0, 1.2 * len(CHART_METRICS) + 0.5 * len(systems)), 4.5))
    try:
        for offset, entry in enumerate(systems):
            values = chart_values(entry)
            positions = [index + (offset - (len(systems) - 1) / 2) * width for index in range(len(values))]
            heights = [100 * value for value, _, _ in values]
            errors = [[100 * (value - low) for value, low, _ in values], [100 * (high - value) for value, _, high
                                                                          in values]]
            axes.bar(positions, heights, width, yerr=errors, capsize=2, label=entry["name"])
        axes.set_xticks(range(len(CHART_METRICS)), [label for _, label in CHART_METRICS])
        axes.set_ylabel("% of test items (95% CI)")
        axes.set_ylim(0, 105)
        axes.set_title(f"{report['title']} (n={report['test_set']['size']})")
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        figure.tight_layout()
        with files.atomic_write(path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(figure)
    return None


# ---------------------------------------------------------------- files


def write_report(report: dict[str, Any], output_dir: Path) -> dict[str, str | None]:
    """Write the chart, report.md and report.json; returns their names relative to ``output_dir``."""
    output_dir = Path(output_dir)
    note = write_chart(report, output_dir / CHART_NAME)
    if note:
        logger.info("chart skipped: %s", note)
        report["chart_note"] = note
    written = {"markdown": "report.md", "json": "report.json", "chart": None if note else CHART_NAME}
    report["files"] = written
    files.atomic_write_text(output_dir / "report.md", render_markdown(report))
    dataio.write_json(output_dir / "report.json", report)
    return written


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the CLI prints: one line per system and where the report is."""
    lines = []
    for entry in report["systems"]:
        if entry["status"] != "ok":
            lines.append(f"{entry['name']:<16} {entry['status']}: {entry['reason']}")
            continue
        metrics = entry["metrics"]
        coverage, _ = coverage_rates(metrics)
        lines.append(f"{entry['name']:<16} exact {rate_cell(metrics['exact'], counts=True)}  "
                     f"coverage {percent(coverage['value'])}  "
                     f"county {percent(metrics['levels']['county']['value'])}  "
                     f"detail kept {percent(metrics['detail_kept']['value'])}  "
                     f"invalid chain {percent(metrics['invalid_chain']['value'])}")
        versus = metrics.get("versus_prior")
        if versus:
            lines.append(f"{'':<16} ≥2 candidates: exact {rate_cell(versus['exact'], counts=True)}  where the prior "
                         f"is wrong {rate_cell(versus['prior_wrong'], counts=True)}  answer not listed first "
                         f"{rate_cell(versus['not_listed_first'], counts=True)}")
    output_dir = Path(report.get("output_dir", "."))
    lines.append(f"report: {output_dir / 'report.md'} (also report.json"
                 f"{', ' + CHART_NAME if report['files'].get('chart') else ''})")
    return lines
