"""The web page of ``serve``: try the model in a browser, complete a file, read an evaluation report.

Plain HTML and a little JavaScript (``resources/webpage.html``, no build step, no UI framework), served by the
same FastAPI app and process as the API:
  GET  /                    the page; needs no key (it holds no data), like /docs. The page asks for the API
                            key when the server has one and sends it as ``Authorization: Bearer`` on every call.
  POST /ui/complete         {"addresses": [...], "detail"?} -> {"results": [{input, answer, chain, detail, decision,
                            probability, abstained, candidates}]}: /v1/complete's answers, explained (the chain
                            and the detail kept come from the gazetteer's candidate the model chose)
  GET  /ui/report           the evaluation report folder given by ``serve --report-dir`` (report.json)
  GET  /ui/report/chart     its chart (comparison.png)
Imported only by api.py, when a server starts (FastAPI is imported here).
The page sends a file's addresses in slices of ``--max-addresses``; the completed file is made in the browser
(the same format as the upload: txt, jsonl or csv, with the answer beside each input).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from ..data.prompt import address_candidates, strip_prefix
from .batching import with_detail
from .protocol import REPORT_FILE, CompleteRequest, RequestError, addresses_from_complete_request

PAGE_FILE = Path(__file__).resolve().parent.parent / "resources" / "webpage.html"
CHART_FILE = "comparison.png"  # evaluation.report.CHART_NAME (not imported: serve does not depend on evaluate)
OPEN_PAGE_PATHS = {"/"}


def decision(details: dict[str, Any]) -> str:
    """How an answer was decided, in the page's words."""
    if details["abstained"]:
        return "abstained"
    if details["decoding"] == "constrained":
        return "single candidate" if len(details["candidates"]) == 1 else "model choice"
    if details["decoding"] == "free_fallback":
        return "free (no candidate)"
    return "free"


def explain(address: str, completion: Any, prefix: str) -> dict[str, Any]:
    """One answer for the page: the chain and detail of the chosen candidate (None for a free answer).
    ``address`` is the request's text, echoed as typed (it may carry the prompt prefix)."""
    details = completion.details()
    chain = detail = None
    if details["decoding"] == "constrained" and not details["abstained"]:
        for candidate in address_candidates(strip_prefix(address, prefix)):
            if candidate.text == completion.text:
                chain, detail = candidate.chain.text(), candidate.detail
                break
    return {"input": address, "answer": completion.text, "chain": chain, "detail": detail,
            "decision": decision(details), "probability": details["probability"], "abstained": details["abstained"],
            "reason": details.get("reason"),
            "candidates": details["candidates"], "more_candidates": details["more_candidates"]}


def page_html(max_addresses: int, model_name: str, needs_key: bool) -> str:
    """The page with the server's limits filled in."""
    settings = json.dumps({"maxAddresses": max_addresses, "model": model_name, "needsKey": needs_key})
    return PAGE_FILE.read_text(encoding="utf-8").replace("/*SETTINGS*/{}", settings)


def add_routes(app: Any, run_model: Callable[[list[str]], Awaitable[list[Any]]], settings: Any,
               report_dir: Optional[Path], prefix: str) -> None:
    """Register the page and its endpoints on ``app`` (before the app's route table is read)."""
    html = page_html(settings.max_addresses, settings.model_name, bool(settings.api_key))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.post("/ui/complete", include_in_schema=False)
    async def ui_complete(body: CompleteRequest, request: Request) -> JSONResponse:
        """/v1/complete's request (the same checks and 422s, ``detail`` included), answered with explanations."""
        addresses = addresses_from_complete_request(body.model_dump(), settings)
        completions = await run_model(with_detail(addresses, body.detail))
        request.state.detail = f"{len(addresses)} address" + ("" if len(addresses) == 1 else "es") + " (page)"
        return JSONResponse({"results": [explain(address, completion, prefix)
                                         for address, completion in zip(addresses, completions)]})

    def report_file(name: str) -> Path:
        if report_dir is None:
            raise RequestError(404, "no evaluation report: start serve with --report-dir EVALUATE_OUTPUT_DIR",
                               error_type="not_found_error", code="no_report")
        path = report_dir / name
        if not path.is_file():
            raise RequestError(404, f"{path} not found", error_type="not_found_error", code="no_report")
        return path

    @app.get("/ui/report", include_in_schema=False)
    async def ui_report() -> JSONResponse:
        path = report_file(REPORT_FILE)
        report = json.loads(path.read_text(encoding="utf-8"))
        return JSONResponse({"folder": str(report_dir), "report": report,
                             "chart": (report_dir / CHART_FILE).is_file()})

    @app.get("/ui/report/chart", include_in_schema=False)
    async def ui_chart() -> FileResponse:
        return FileResponse(report_file(CHART_FILE), media_type="image/png")
