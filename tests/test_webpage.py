"""The web page of ``serve`` in a real headless browser (Debian's chromium through its chromedriver).

scripts/test.sh installs chromium and chromium-driver when they are missing and it runs as root (CI does); the
test skips, saying which packages it needs, only when they are not installed. It saves the screenshot the README
shows (docs/webpage.png).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from address_completion.inference.generate import REASON_NO_CANDIDATE, Completer
from address_completion.inference.protocol import ServerSettings
from address_completion.inference.server import start_in_thread

ADDRESS, FULL = "碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"
TWO_CANDIDATES = "朝阳区建国路88号"
NO_CANDIDATE = "扬子江南路1号"  # no division named: no candidate, so with --min-confidence the model abstains
KEY = "page-key"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "webpage.png"
WAIT = 120  # seconds for any element (a model call on CPU takes well under that)

selenium = pytest.importorskip("selenium", reason="selenium is in the test extra (pip install -e '.[test]')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; "
                    "scripts/test.sh installs them when run as root)")
    return chromium, driver


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """An evaluate output folder: report.json and comparison.png of a predictions system (no model needed)."""
    import yaml

    from address_completion.evaluation.config import load_config
    from address_completion.evaluation.evaluate import run_evaluation

    folder = tmp_path_factory.mktemp("report")
    pairs = [(ADDRESS, FULL), ("法门镇美阳村3组", "陕西省宝鸡市扶风县法门镇美阳村3组"), ("北京朝阳区建国路88号", "北京市朝阳区建国路88号")]
    test = folder / "test.json"
    test.write_text("".join(json.dumps({"src": src, "tgt": tgt}, ensure_ascii=False) + "\n" for src, tgt in pairs),
                    encoding="utf-8")
    given = folder / "given.jsonl"
    given.write_text("".join(json.dumps({"src": src, "predict": tgt}, ensure_ascii=False) + "\n"
                             for src, tgt in pairs[:2]) + json.dumps({"src": pairs[2][0], "predict": "吉林省长春市朝阳区建国路88号"},
                                                                     ensure_ascii=False) + "\n", encoding="utf-8")
    config = folder / "eval.yaml"
    config.write_text(yaml.safe_dump({"title": "page test", "test_file": str(test), "output_dir": str(folder / "out"),
                                      "systems": [{"name": "given", "kind": "predictions", "path": str(given)},
                                                  {"kind": "rules", "engine": "gazetteer"}]}, allow_unicode=True),
                      encoding="utf-8")
    run_evaluation(load_config(config), progress=False)
    assert (folder / "out" / "comparison.png").is_file()
    return folder / "out"


@pytest.fixture(scope="module")
def server(default_model_dir, lora_adapter_dir, report_dir):
    completer = Completer.load(str(default_model_dir), lora_path=str(lora_adapter_dir), max_new_tokens=8,
                               grounding="candidates", decoding="constrained", min_confidence=0.5)
    running = start_in_thread(completer, ServerSettings(port=0, api_key=KEY, model_name="tiny",
                                                        report_dir=str(report_dir), max_addresses=2))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,640", "--lang=zh-CN"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failure messages
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


def wait(browser, condition, timeout: float = WAIT):
    """``condition``'s first true value; on timeout, what the page shows as error or status (and its console)."""
    def page_state() -> str:
        texts = {name: browser.find_element(By.ID, name).text for name in ("error", "status", "report-error")}
        return f"page says {texts}; console: {browser.get_log('browser')}"

    WebDriverWait(browser, timeout).until(lambda driver: condition(driver) or page_state_error(driver))
    value = condition(browser)
    assert value, page_state()
    return value


def page_state_error(browser) -> bool:
    """True when the page shows an error (the wait can stop: the condition will not come true)."""
    return bool(browser.find_element(By.ID, "error").text or browser.find_element(By.ID, "report-error").text)


def result_rows(browser) -> list[list[str]]:
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")]


@pytest.mark.slow
def test_page_completes_an_address_and_shows_an_abstention(browser, server):
    browser.get(server.url + "/")
    assert browser.title == "address_completion"
    browser.find_element(By.ID, "key").send_keys(KEY)
    box = browser.find_element(By.ID, "addresses")
    box.send_keys(ADDRESS + "\n" + NO_CANDIDATE + "\n" + TWO_CANDIDATES)
    browser.find_element(By.ID, "complete").click()
    wait(browser, lambda driver: len(result_rows(driver)) == 3)
    first, second, third = result_rows(browser)
    assert first[:5] == [ADDRESS, FULL, "陕西省西安市碑林区", "扬子江南路467-6号", "single candidate"]
    assert first[5] == f"{FULL} (1.000)"
    assert second[0] == second[1] == NO_CANDIDATE
    assert second[4] == f"abstained — the input comes back unchanged\n{REASON_NO_CANDIDATE}" and second[5] == "none"
    # two readings (北京 and 长春 have a 朝阳区): the model chooses, with its probability among the candidates
    assert third[4].startswith("model choice (p = ") and len(third[5].splitlines()) == 2
    assert third[1] == third[5].splitlines()[0].rsplit(" (", 1)[0] and third[3] == "建国路88号"
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert rows[1].get_attribute("class") == "abstained" and rows[0].get_attribute("class") == ""
    SCREENSHOT.parent.mkdir(exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, height + 140)  # the whole page in the picture (outer size: add the frame)
    browser.save_screenshot(str(SCREENSHOT))
    browser.set_window_size(1280, 640)
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


def upload_and_download(browser, path: Path, downloads: Path, expected_name: str) -> str:
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait(browser, lambda driver: driver.find_element(By.ID, "download").is_displayed())
    browser.find_element(By.ID, "download").click()
    target = downloads / expected_name
    deadline = time.monotonic() + WAIT
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.is_file(), f"no {expected_name} in {sorted(p.name for p in downloads.iterdir())}"
    return target.read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_file_goes_up_and_its_completions_come_back(browser, server, downloads, tmp_path):
    browser.get(server.url + "/")
    browser.find_element(By.ID, "key").send_keys(KEY)
    text_file = tmp_path / "addresses.txt"
    # three addresses with --max-addresses 2: the page sends them in two requests
    text_file.write_text(f"{ADDRESS}\n{NO_CANDIDATE}\n碑林区扬子江南路1号\n", encoding="utf-8")
    assert upload_and_download(browser, text_file, downloads, "addresses.completed.txt") == (
        f"{FULL}\n{NO_CANDIDATE}\n陕西省西安市碑林区扬子江南路1号\n")
    csv_file = tmp_path / "sheet.csv"
    csv_file.write_text(f"id,address\n1,{ADDRESS}\n2,\"{NO_CANDIDATE}\"\n", encoding="utf-8")
    assert upload_and_download(browser, csv_file, downloads, "sheet.completed.csv") == (
        f"id,address,predict,decision\n1,{ADDRESS},{FULL},single candidate\n2,{NO_CANDIDATE},{NO_CANDIDATE},abstained\n")
    jsonl_file = tmp_path / "rows.jsonl"
    jsonl_file.write_text(json.dumps({"src": ADDRESS, "id": 7}, ensure_ascii=False) + "\n", encoding="utf-8")
    [record] = [json.loads(line) for line in
                upload_and_download(browser, jsonl_file, downloads, "rows.completed.jsonl").splitlines()]
    assert record == {"src": ADDRESS, "id": 7, "predict": FULL, "decision": "single candidate", "probability": 1.0,
                      "abstained": False}


@pytest.mark.slow
def test_a_wrong_key_is_shown_not_swallowed(browser, server):
    browser.get(server.url + "/")
    browser.find_element(By.ID, "key").send_keys("wrong")
    browser.find_element(By.ID, "addresses").send_keys(ADDRESS)
    browser.find_element(By.ID, "complete").click()
    wait(browser, lambda driver: driver.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith("missing or wrong API key")


@pytest.mark.slow
def test_report_tab_shows_the_summary_table_and_chart(browser, server, report_dir):
    browser.get(server.url + "/")
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.ID, "tab-report").click()
    wait(browser, lambda driver: driver.find_elements(By.CSS_SELECTOR, "#summary tbody tr"))
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")]
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert [row[:2] for row in rows] == [[entry["name"], entry["kind"]] for entry in report["systems"]]
    assert rows[0][2].startswith("66.7% (") and rows[0][2].endswith(" 2/3")  # given: 2 of 3 exact
    assert browser.find_element(By.ID, "report-title").text == "page test"
    wait(browser, lambda driver: driver.execute_script(
        "const image = document.getElementById('chart'); return !image.hidden && image.complete && image.naturalWidth"))


def test_a_report_dir_without_a_report_is_refused_at_start(tmp_path):
    from address_completion.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--report-dir .*: no report.json there; give the output_dir of an evaluate run"):
        ServerSettings(report_dir=str(tmp_path)).validate()


@pytest.mark.slow
def test_the_page_endpoint_takes_complete_requests_detail_and_checks(server):
    """/ui/complete is /v1/complete explained: the same request model, so ``detail`` is honoured (it was ignored)
    and a bad body is a 422 naming the field (broken JSON was parsed by hand)."""
    import urllib.error
    import urllib.request

    def post(body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(server.url + "/ui/complete", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    address = "碑林区_扬子江南路1号"
    answers = {detail: post(json.dumps({"addresses": [address], "detail": detail}).encode())
               for detail in ("verbatim", "clean")}
    assert answers["verbatim"][0] == 200 and answers["verbatim"][1]["results"][0]["answer"] == "陕西省西安市碑林区_扬子江南路1号"
    assert answers["clean"][0] == 200 and answers["clean"][1]["results"][0]["answer"] == "陕西省西安市碑林区扬子江南路1号"
    status, body = post(json.dumps({"addresses": [address], "detail": "CLEAN"}).encode())
    assert status == 422 and "detail" in json.dumps(body)
    assert post(b'{"addresses": [')[0] in (400, 422)
