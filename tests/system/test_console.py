"""The gateway's fleet-wide /metrics and its console, driven in headless Chromium.

The browser test needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium
(the test extra); without them it skips locally and fails under CI=true. With
WARREN_CONSOLE_SCREENSHOTS=DIR it saves a screenshot of each part of the console there
(docs/console/ holds the committed ones).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.fleet import Fleet

pytestmark = pytest.mark.slow

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the response open
            return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def gateway(fleet: Fleet, auth: str = "none") -> str:
    port = free_port()
    fleet.spawn("gateway", "--port", str(port), "--auth", auth)
    base = f"http://127.0.0.1:{port}"
    fleet.wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=60, what="the gateway")
    return base


def browser() -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not chromium or not driver:
        message = "headless Chromium is missing: `make browser` (chromium, chromium-driver)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1600"):
        options.add_argument(arg)
    options.binary_location = chromium
    return webdriver.Chrome(options=options, service=Service(driver))


def wait_until(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_gateway_serves_the_fleet_wide_metrics(fleet: Fleet) -> None:
    # Given a worker, a gateway and a function invoked twice
    fleet.function("widely", handler="app.echo")
    fleet.worker(slots=1)
    base = gateway(fleet)
    fleet.client.invoke("widely", {"n": 1})
    fleet.client.invoke("widely", {"n": 2})
    # Then the gateway's /metrics has the fleet's counters, workers and queues
    status, text = get(base + "/metrics")
    assert status == 200
    assert 'warren_invocations_total{function="widely"} 2' in text
    assert f'warren_queue_messages{{queue="{fleet.keys.work_queue()}"}} 0' in text
    assert "# TYPE warren_worker_heartbeat_age_seconds gauge" in text
    assert "\nwarren_unreserved_concurrent_executions " in text  # a parked lease may count


def test_console_shows_functions_a_chart_with_points_and_a_log_line(fleet: Fleet) -> None:
    # Given a fleet with two functions, one invoked a few times and failing once
    fleet.function("console-hello", handler="app.echo", memory_mb=256)
    fleet.function("console-fail", handler="app.fail")
    fleet.worker(slots=2)
    base = gateway(fleet)
    for n in range(3):
        fleet.client.invoke("console-hello", {"n": n})
    fleet.client.invoke("console-fail", {})
    driver = browser()
    shots = os.environ.get("WARREN_CONSOLE_SCREENSHOTS")
    try:
        # When a person opens the console
        driver.get(base + "/console/")

        # Read and click through the page's own script: the tables are redrawn every few
        # seconds, so an element found a moment ago may be gone (stale) by the next call.
        def text_of(element_id: str) -> str:
            return str(driver.execute_script(
                "return document.getElementById(arguments[0]).innerText", element_id))

        def click_function(name: str) -> None:
            driver.execute_script(
                "for (const tr of document.querySelectorAll('#functions-table tbody tr'))"
                "  if (tr.cells[0].textContent === arguments[0]) tr.click();", name)

        # Then they see the function names, with their counters
        wait_until(lambda: "console-hello" in text_of("functions-table"), "the functions table")
        assert "console-fail" in text_of("functions-table")
        # and, on choosing a function, its invocation chart has data points
        click_function("console-hello")
        wait_until(lambda: text_of("detail-name") == "console-hello", "console-hello's detail")
        wait_until(lambda: driver.find_elements("css selector", "#chart-invocations circle.point"),
                   "a data point on the invocations chart")
        # and a log line of a recent invocation
        wait_until(lambda: "START RequestId:" in text_of("invocations")
                   and "echo {'n'" in text_of("invocations"), "a log line of console-hello")
        # And it updates without a reload: a new invocation shows up in the counters
        fleet.client.invoke("console-hello", {"n": 9})
        invocations_of_hello = (
            "const row = [...document.querySelectorAll('#functions-table tbody tr')]"
            "  .find((tr) => tr.cells[0].textContent === 'console-hello');"
            "return row ? row.cells[10].textContent : null;")
        wait_until(lambda: driver.execute_script(invocations_of_hello) == "4",
                   "the counter to reach 4")
        # and usage and cost are shown
        wait_until(lambda: "requests" in text_of("usage-total"), "the usage line")
        assert "console-hello" in text_of("usage-table")
        if shots:
            save_screenshots(driver, Path(shots))
    finally:
        driver.quit()


def save_screenshots(driver: Any, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    time.sleep(1)  # the charts' last redraw
    driver.save_screenshot(str(directory / "console.png"))
    for section in ("functions", "detail", "mappings", "workers", "usage"):
        element = driver.find_element("id", section)
        driver.execute_script("arguments[0].scrollIntoView()", element)
        element.screenshot(str(directory / f"console-{section}.png"))


def test_console_needs_an_access_key_when_the_gateway_signs(fleet: Fleet) -> None:
    # Given a gateway with SigV4 auth and an access key
    fleet.function("guarded", handler="app.echo")
    base = gateway(fleet, auth="sigv4")
    created = fleet.cli("key", "create", "console-test", "-o", "json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    key_id, secret = key["access_key_id"], key["secret_access_key"]
    # Then the JSON is refused without a session, and a wrong secret does not sign in
    assert get(base + "/console/api/overview")[0] == 401
    request = urllib.request.Request(
        base + "/console/api/login", method="POST",
        data=json.dumps({"key_id": key_id, "secret": "wrong"}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    refused.value.close()
    # And the right one signs in, after which the overview answers
    request = urllib.request.Request(
        base + "/console/api/login", method="POST",
        data=json.dumps({"key_id": key_id, "secret": secret}).encode())
    with urllib.request.urlopen(request, timeout=10) as reply:
        cookie = reply.headers["Set-Cookie"].split(";", 1)[0]
    signed = urllib.request.Request(base + "/console/api/overview", headers={"Cookie": cookie})
    with urllib.request.urlopen(signed, timeout=10) as reply:
        assert [f["name"] for f in json.loads(reply.read())["functions"]] == ["guarded"]
