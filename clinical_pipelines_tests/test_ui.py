"""The Dagster UI really works: a real ``dagster-webserver`` driven by headless Debian Chromium.

The test starts ``dagster-webserver -w workspace.yaml`` on a free loopback port with a throwaway
``DAGSTER_HOME``, data folder and key folder, checks over GraphQL that the ``clinical_pipelines``
code location loaded (failing with Dagster's own error text if not), then, in Chromium:

* opens the global asset lineage (``/asset-groups``), expands every group and checks that the
  ``landing`` group box holds the ``drops`` node and the ``raw`` group box holds ``dicom``,
  ``notes`` and ``tabular``; clicking ``dicom`` must open the panel for the key ``raw / dicom``;
* opens the automation list (``/automation``) and checks that ``landing_sensor`` is listed with
  its switch on (its default status is RUNNING).

Screenshots (``asset_graph.png``, ``asset_detail.png``, ``sensors.png``), the webserver's log and
the browser's console go to ``.test-output/<test name>/``. Chromium is Debian's ``/usr/bin/chromium``
(``make browser`` installs it); Playwright's downloaded browsers are never used. Only the webserver
runs, not the daemon, so the sensor is on but never ticks here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCATION = "clinical_pipelines"
SENSORS = {"landing_sensor": "Standard sensor", "datasets_automation": "Automation condition sensor"}
SCHEDULES = {"access_review_daily": "access_review", "audit_export_daily": "audit_export"}  # name -> its job
# Asset graph group -> the node labels (last key component) it must hold; keys are group/name.
GROUPS = {
    "landing": ["drops"],
    "raw": ["dicom", "notes", "tabular"],
    "validated": ["dicom", "notes", "tabular"],
    "deidentified": ["dicom", "notes", "tabular"],
    "curated": ["chest_ct_outcomes", "brain_mr", "notes_labs"],  # one per shipped dataset spec
    "training": ["chest_ct_outcomes", "brain_mr", "notes_labs"],
}
START_TIMEOUT_S = 90.0
UI_TIMEOUT_MS = 30_000

LOCATIONS_QUERY = """
{
  workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
        }
      }
    }
  }
}
"""

pytestmark = pytest.mark.ui


@dataclass(frozen=True)
class Webserver:
    url: str
    log: Path
    stopped_run: str  # the run in which a blocking validation check stopped a drop


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def _graphql(url: str, query: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, object] = json.load(response)
    return body


def _wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """``/server_info`` answers, then the code location has finished loading (or we fail with its error)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"dagster-webserver did not answer within {START_TIMEOUT_S:.0f} s:\n{_log_tail(log)}")
        time.sleep(0.5)
    while True:
        body = _graphql(url, LOCATIONS_QUERY)
        workspace = body.get("data", {}).get("workspaceOrError", {})  # type: ignore[union-attr]
        entries = {entry["name"]: entry for entry in workspace.get("locationEntries", [])}
        entry = entries.get(LOCATION)
        if entry and entry["loadStatus"] == "LOADED":
            location = entry["locationOrLoadError"] or {}
            if location.get("__typename") == "PythonError":
                pytest.fail(f"code location {LOCATION} failed to load:\n{location['message']}\n{location['stack']}")
            return
        if time.monotonic() > deadline:
            pytest.fail(f"code location {LOCATION} not loaded within {START_TIMEOUT_S:.0f} s: {body}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT to the whole process group (webserver and its code server), then SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # also any code server left in the group
    proc.wait(timeout=15)


@pytest.fixture
def webserver(tmp_path: Path, test_output: Path) -> Iterator[Webserver]:
    """``dagster-webserver`` on a free port with a throwaway instance, data folder and key folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # no telemetry, no first-run dialog
    data_dir = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLINICAL_PIPELINES_")}
    env.update(
        DAGSTER_HOME=str(home),
        CLINICAL_PIPELINES_DATA_DIR=str(data_dir),
        CLINICAL_PIPELINES_KEY_DIR=str(tmp_path / "keys"),  # outside the data folder
        GX_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    # Sample drops (with the broken ones) in landing, as after `make sample`, processed headlessly
    # into this instance so the UI has runs and a failed validation check to show.
    for command in (
        ["synth", "--out", str(data_dir), "--seed", "7", "--slices", "2", "--faults"],
        ["run", "--data-dir", str(data_dir), "--json"],
    ):
        done = subprocess.run(
            [str(BIN / "clinical-pipelines"), *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode:
            pytest.fail(f"clinical-pipelines {command[0]} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    summary = json.loads(done.stdout)
    stopped_run = next(d["run_id"] for d in summary["drops"] if d["partition_key"] == "faulty-source/drop-invalid")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = test_output / "webserver.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_ready(proc, url, log)
        yield Webserver(url=url, log=log, stopped_run=stopped_run)
    finally:
        _stop(proc)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package) before the UI test")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _row_of(page: Page, link: Locator, switch: Locator) -> Locator:
    """The innermost element holding ``link`` and exactly one ``switch``: that automation's row."""
    rows = page.locator("div").filter(has=link).filter(has=switch)
    for i in range(rows.count() - 1, -1, -1):
        if rows.nth(i).locator(switch).count() == 1:
            return rows.nth(i)
    raise AssertionError("no row holds the automation's link and exactly one switch")


def _no_modal(page: Page) -> None:
    """Close any dialog (the first-run "nux" one, a toast-like overlay) and check that none is left."""
    dialogs = page.locator(".bp5-dialog, [role=dialog]")
    if dialogs.count():
        page.keyboard.press("Escape")
    expect(dialogs).to_have_count(0)


def _screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000, f"{path} is suspiciously small ({path.stat().st_size} bytes)"


def _inside(inner: Locator, outer: Locator) -> bool:
    a, b = inner.bounding_box(), outer.bounding_box()
    assert a is not None and b is not None
    return (
        b["x"] <= a["x"]
        and b["y"] <= a["y"]
        and a["x"] + a["width"] <= b["x"] + b["width"]
        and a["y"] + a["height"] <= b["y"] + b["height"]
    )


def test_asset_graph_and_sensor_in_the_ui(browser: Browser, webserver: Webserver, test_output: Path) -> None:
    # Wide enough that the six stage groups fit at a zoom where Dagster still draws node labels.
    page = browser.new_page(viewport={"width": 3840, "height": 1100})
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    try:
        # Global asset lineage: with several groups Dagster draws them collapsed; expand them all
        # through the graph's settings menu, as a user would.
        page.goto(f"{webserver.url}/asset-groups")
        expect(page.get_by_text("Global asset lineage").first).to_be_visible()
        groups = page.locator("svg foreignObject.group")
        expect(groups.first).to_be_visible()
        _no_modal(page)
        page.locator("button:has([role=img][aria-label=settings])").last.click()
        page.get_by_role("menuitem", name="Expand all groups").click()
        page.keyboard.press("Escape")  # close the menu so it does not cover the graph
        expect(page.get_by_role("menuitem")).to_have_count(0)
        located: dict[str, Locator] = {}
        for group, names in GROUPS.items():
            box = groups.filter(has=page.get_by_text(group, exact=True))
            expect(box).to_have_count(1)
            for name in names:
                # Node labels are the last key part ("dicom" in raw and in validated): find it in its group.
                nodes = page.locator(f'svg foreignObject [data-tooltip="{name}"]')
                expect(nodes.first, f"asset node {group}/{name} in the graph").to_be_visible()
                inside = [nodes.nth(i) for i in range(nodes.count()) if _inside(nodes.nth(i), box)]
                assert len(inside) == 1, f"expected one node {name} inside group {group}, found {len(inside)}"
                located[f"{group}/{name}"] = inside[0]
        _no_modal(page)
        _screenshot(page, test_output / "asset_graph.png")

        # A node is the asset it says: clicking it opens the panel for the full key.
        located["raw/dicom"].click()
        expect(page.get_by_text("raw / dicom", exact=True).first).to_be_visible()
        assert "raw%2Fdicom" in page.url, page.url
        expect(page.get_by_text("Description", exact=True).first).to_be_visible()  # the panel has loaded
        _screenshot(page, test_output / "asset_detail.png")

        # The run of the drop stopped at validation shows the failed check, its expectation and counts.
        page.goto(f"{webserver.url}/runs/{webserver.stopped_run}")
        expect(page.get_by_text("Failure").first).to_be_visible()
        expect(page.get_by_text("tabular_suite").first).to_be_visible()
        expect(page.get_by_text("expect_compound_columns_to_be_unique", exact=False).first).to_be_visible()
        _no_modal(page)
        _screenshot(page, test_output / "stopped_run.png")

        # Automation: the sensors and the governance schedules are listed, switched on (RUNNING by default).
        page.goto(f"{webserver.url}/automation")
        switch = page.locator("label[class*=formatSwitch] input[type=checkbox]")  # not the row's select box
        for name, kind in {**SENSORS, **SCHEDULES}.items():
            link = page.get_by_role("link", name=name)
            expect(link).to_be_visible()
            row = _row_of(page, link, switch)
            expect(row.get_by_text(kind).first).to_be_visible()
            expect(row.locator(switch)).to_be_checked()
        _no_modal(page)
        _screenshot(page, test_output / "sensors.png")
    finally:
        (test_output / "browser_console.log").write_text("\n".join(console) + "\n")
        page.close()
