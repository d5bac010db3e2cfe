"""The console in Debian's Chromium, driven by Playwright, against a real server and real models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import BEHAVIOUR_MODEL, ConnectionRecorder, SignInServer
from tests.harness import (
    REPO,
    Server,
    client_environment,
    deploy,
    wait_for_status,
    write_model,
)

pytestmark = pytest.mark.browser


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
# The server responds in milliseconds; this bounds waits on slow CI machines.
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing; install Debian's chromium package"
        # CI must run these tests, so a missing browser fails there instead of skipping.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="module")
def second_endpoint(
    console_server: Server, calls_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    archive = write_model(tmp_path_factory.mktemp("alpha"), BEHAVIOUR_MODEL)
    description = deploy(
        console_server, "alpha-ranker", str(archive), environment={"CALLS_FILE": str(calls_file)}
    )
    assert description["EndpointStatus"] == "InService", description
    return "alpha-ranker"


# Loads until the file $START_GATE exists (30 s at most), so the endpoint stays
# Creating until the test has seen it so.
SLOW_START_MODEL = """
import os
import time

def model_fn(model_dir):
    deadline = time.monotonic() + 30
    while not os.path.exists(os.environ["START_GATE"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "ready"

def transform_fn(model, body, content_type, accept):
    return body, content_type
"""


def screenshot(target: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(SCREENSHOTS / name))


def open_test_tab(page: Any, server: Server, endpoint: str) -> None:
    page.goto(f"{server.url}/console/endpoints/{endpoint}?tab=test")
    page.get_by_role("textbox", name="Request body").wait_for()


def set_body(page: Any, text: str) -> None:
    editor = page.get_by_role("textbox", name="Request body")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def add_first_header(page: Any, name: str, value: str) -> None:
    page.get_by_text("Custom URL and headers").click()
    page.get_by_role("button", name="Add header").click()
    page.get_by_label("Header 1 name").fill(name)
    page.get_by_label("Header 1 value").fill(value)


def send_and_wait(page: Any, status: str) -> Any:
    page.get_by_role("button", name="Send Request").click()
    card = page.locator("article.card").first
    card.and_(page.locator(f'[data-status="{status}"]')).wait_for()
    return card


def test_search_filters_list(
    page: Any, console_server: Server, behaviour_endpoint: str, second_endpoint: str
) -> None:
    page.goto(console_server.url + "/")
    rows = page.locator("tbody tr[data-endpoint]")
    rows.nth(1).wait_for()
    assert rows.count() >= 2
    screenshot(page, "endpoints-list.png")

    page.keyboard.press("/")
    search = page.get_by_role("searchbox", name="Search endpoints")
    assert search.evaluate("node => node === document.activeElement")
    search.type("alph")
    expect(rows).to_have_count(1)

    assert rows.first.get_attribute("data-endpoint") == second_endpoint
    assert page.locator("#endpoint-total").inner_text() == "Showing 1\N{EN DASH}1 of 1 endpoint"
    assert "InService" in rows.first.inner_text()


def test_endpoint_opens(page: Any, console_server: Server, behaviour_endpoint: str) -> None:
    page.goto(console_server.url + "/")
    page.get_by_role("link", name=behaviour_endpoint, exact=True).click()

    page.wait_for_url(f"**/console/endpoints/{behaviour_endpoint}")
    assert page.get_by_role("heading", level=1).inner_text().startswith(behaviour_endpoint)
    assert "arn:aws:sagemaker:us-east-1:123456789012:endpoint/behaviour" in page.inner_text("main")
    page.get_by_role("tab", name="Test inference").click()
    assert page.url.endswith("?tab=test")
    page.get_by_role("tab", name="Logs").click()
    page.get_by_text("Starting 1 worker").first.wait_for()


def test_valid_request_completes(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"instances": [[5.1, 3.5, 1.4, 0.2]]}')

    card = send_and_wait(page, "Complete")

    fields = card.locator(".card-fields").inner_text()
    for label in ("Status", "Execution Length", "Request Time", "Result Time"):
        assert label in fields
    assert "Complete" in card.locator(".card-status").inner_text()
    assert card.locator(".execution-length").inner_text().endswith(" ms")
    assert "Model" in (card.locator(".execution-length").get_attribute("title") or "")
    assert card.locator("time").first.get_attribute("title")
    body = card.locator(".json-tree").inner_text()
    assert "5.1" in body
    assert '"content_type"' in body
    assert "application/json" in body
    expect(page.locator("#announcer")).to_have_text(
        re.compile(r"^Request complete in \d+\.\d milliseconds\.$")
    )
    screenshot(card, "card-complete.png")

    page.reload()
    page.locator('article.card[data-status="Complete"]').first.wait_for()


def test_failing_model_shows_failure_reason(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"action": "fail"}')

    card = send_and_wait(page, "Failed")

    reason = card.locator("details.failure")
    assert reason.locator("summary").inner_text() == "Failure Reason"
    text = reason.inner_text()
    assert "ModelError" in text
    assert "500" in text
    assert "the model rejects this input: fail was requested" in text
    expect(page.locator("#announcer")).to_have_text(
        "Request failed: ModelError. See Failure Reason."
    )
    screenshot(card, "card-failed.png")
    reason.get_by_role("link", name="See the endpoint's logs").click()
    assert page.url.endswith("?tab=logs")
    page.get_by_role("tabpanel", name="Logs").get_by_text("ValueError").first.wait_for()


def test_invalid_json_blocks_sending(
    page: Any, console_server: Server, behaviour_endpoint: str, calls_file: Path
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    calls_before = calls_file.read_text().count("call")
    set_body(page, '{\n  "a": 1,\n  "b": }')

    send = page.get_by_role("button", name="Send Request")
    assert send.is_disabled()
    assert page.locator("#body-status").inner_text() == (
        "Invalid JSON at line 3, column 8: Expected a value, found '}'."
    )
    assert "disabled" in page.locator("#send-reason").inner_text()
    page.keyboard.press("Control+Enter")
    time.sleep(0.5)

    assert page.locator("article.card").count() == 0
    assert calls_file.read_text().count("call") == calls_before


def test_slow_model_pending_then_complete(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"action": "sleep", "seconds": 2}')

    page.get_by_role("button", name="Send Request").click()
    card = page.locator("article.card").first
    card.and_(page.locator('[data-status="Pending"]')).wait_for()
    assert card.get_by_role("img", name="Request in progress").is_visible()
    expect(card.locator(".elapsed")).to_have_text(re.compile(r"^(0\.[5-9]|[1-9]\d*\.\d) s$"))

    card.and_(page.locator('[data-status="Complete"]')).wait_for()
    assert float(card.locator(".execution-length").inner_text().split()[0]) >= 2000


def test_cancel_pending_request(page: Any, console_server: Server, behaviour_endpoint: str) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"action": "sleep", "seconds": 3}')

    page.get_by_role("button", name="Send Request").click()
    page.get_by_role("button", name="Cancel request").click()

    card = page.locator("article.card").first
    card.and_(page.locator('[data-status="Cancelled"]')).wait_for()
    assert "Cancelled" in card.locator(".card-status").inner_text()
    expect(page.locator("#announcer")).to_have_text("Request cancelled.")
    # The server detects the disconnect and cancels the invocation.
    deadline = time.monotonic() + 30
    while "cancelled by the browser" not in console_server.output():
        assert time.monotonic() < deadline, "the server did not cancel the invocation"
        time.sleep(0.1)


def test_large_response_stays_responsive(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, json.dumps({"action": "big", "size": 20_000_000}))

    card = send_and_wait(page, "Complete")

    assert "Showing the first" in card.locator(".notice").inner_text()
    assert "19.1 MB" in card.inner_text()
    assert card.get_by_role("link", name="Download response body (19.1 MB)").is_visible()
    # The card renders a bounded preview, not 19 MB of text, so the page
    # stays usable: the tabs still switch.
    assert len(card.inner_text()) < 1_000_000
    page.get_by_role("tab", name="Overview").click()
    page.get_by_role("tab", name="Test inference").click()
    assert page.get_by_role("button", name="Send Request").is_visible()


def test_unlisted_custom_url_rejected(
    page: Any, console_server: Server, behaviour_endpoint: str, recorder: ConnectionRecorder
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, "{}")
    page.get_by_text("Custom URL and headers").click()
    page.get_by_label("Custom URL (optional)").fill(recorder.origin + "/invocations")

    card = send_and_wait(page, "Failed")

    assert "TestTargetRejected" in card.inner_text()
    assert "--allow-test-target" in card.inner_text()
    assert recorder.connections == 0


def test_copy_as_code_has_no_credential(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"copy": true}')
    add_first_header(page, "X-Amzn-SageMaker-Custom-Attributes", "trace=on")
    card = send_and_wait(page, "Complete")

    for label in ("AWS CLI", "boto3", "curl"):
        card.get_by_role("button", name=f"Copy as {label}").click()
        snippet = card.locator("pre.snippet").inner_text()
        assert behaviour_endpoint in snippet
        assert "trace=on" in snippet
        for secret in ("AKIDSAGEPORTTEST", "sageport-test-secret", "Credential="):
            assert secret not in snippet, (label, snippet)


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("json", '{\n  "quote": "it\'s",\n  "copy": true\n}', {"quote": "it's", "copy": True}),
        ("text", "line one\nit's line two\n", {"text": "line one\nit's line two\n"}),
    ],
)
def test_cli_snippet_runs_on_project_cli(
    page: Any,
    console_server: Server,
    behaviour_endpoint: str,
    tmp_path: Path,
    kind: str,
    body: str,
    expected: dict[str, Any],
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    page.get_by_label("Body type").select_option(kind)
    set_body(page, body)
    add_first_header(page, "X-Amzn-SageMaker-Custom-Attributes", "trace=on")
    card = send_and_wait(page, "Complete")
    card.get_by_role("button", name="Copy as AWS CLI").click()
    snippet = card.locator("pre.snippet").inner_text()

    # The AWS CLI that the project installs (v1), as a user's shell finds it.
    environment = client_environment(console_server.url)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(
        ["bash", "-c", snippet],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "--cli-binary-format" not in snippet
    response = json.loads((tmp_path / "response.out").read_text())
    assert response["echo"] == expected
    assert response["content_type"] == page.get_by_label("Content-Type").input_value()


def test_status_filter_and_double_click(
    page: Any, console_server: Server, behaviour_endpoint: str, tmp_path: Path
) -> None:
    archive = write_model(
        tmp_path, "def model_fn(model_dir):\n    raise OSError('weights missing')\n"
    )
    deploy(console_server, "broken-weights", str(archive))
    page.goto(console_server.url + "/")

    page.get_by_label("Filter by status").select_option("Failed")
    expect(page.locator("tbody tr[data-endpoint]")).to_have_count(1)
    row = page.locator('tbody tr[data-endpoint="broken-weights"]')
    assert "Failed" in row.inner_text()
    assert row.locator(".status-icon").inner_text() == "✕"
    row.locator("td").nth(4).dblclick()

    page.wait_for_url("**/console/endpoints/broken-weights")
    alert = page.get_by_role("alert")
    assert "Failure reason" in alert.inner_text()
    assert "weights missing" in alert.inner_text()


def test_list_refreshes_while_creating(page: Any, console_server: Server, tmp_path: Path) -> None:
    archive = write_model(tmp_path, SLOW_START_MODEL)
    gate = tmp_path / "start-gate"
    deploy(
        console_server,
        "slow-start",
        str(archive),
        environment={"START_GATE": str(gate)},
        wait=False,
    )
    page.goto(console_server.url + "/")
    page.get_by_label("Search endpoints").fill("slow-start")

    row = page.locator('tbody tr[data-endpoint="slow-start"]')
    try:
        row.locator('[data-status="Creating"]').wait_for()
    finally:
        gate.touch()
    row.locator('[data-status="InService"]').wait_for()


def test_tab_leaves_editor_and_ctrl_enter_sends(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"keyboard": true}')

    page.keyboard.press("Tab")
    focused_in_editor = page.evaluate("document.activeElement.closest('.cm-editor') !== null")
    assert not focused_in_editor
    page.get_by_role("textbox", name="Request body").click()
    page.keyboard.press("Control+Enter")

    card = page.locator('article.card[data-status="Complete"]').first
    card.wait_for()
    assert "keyboard" in card.inner_text()


def test_csv_response_shown_as_table(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"action": "csv"}')

    card = send_and_wait(page, "Complete")

    table = card.get_by_role("table", name="Response body (CSV)")
    assert table.locator("tr").count() == 3
    assert table.locator("tr").nth(1).locator("td").all_inner_texts() == ["setosa", "0.97"]


def test_file_body_sent_as_raw_bytes(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    page.get_by_label("Body type").select_option("file")
    assert page.get_by_role("button", name="Send Request").is_disabled()
    page.get_by_label("Request file").set_input_files(
        {"name": "row.txt", "mimeType": "text/plain", "buffer": b"raw bytes here"}
    )
    page.get_by_label("Content-Type").fill("text/plain")

    card = send_and_wait(page, "Complete")

    assert "raw bytes here" in card.inner_text()
    assert "file row.txt" in card.locator(".card-title").inner_text()


def test_body_type_keeps_user_accept(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    body_type = page.get_by_label("Body type")
    content_type = page.get_by_label("Content-Type")
    accept = page.get_by_label("Accept", exact=True)

    # Accept is the response type, chosen apart from the body, as in SageMaker
    # Studio, so choosing a body type changes only Content-Type.
    body_type.select_option("csv")
    expect(content_type).to_have_value("text/csv")
    expect(accept).to_have_value("application/json")
    accept.fill("text/csv")
    for kind, expected_content_type in (("text", "text/plain"), ("json", "application/json")):
        body_type.select_option(kind)
        expect(content_type).to_have_value(expected_content_type)
        expect(accept).to_have_value("text/csv")
    suggestions = page.locator(f"datalist#{accept.get_attribute('list')} option")
    offered = [option.get_attribute("value") for option in suggestions.all()]
    hint = page.locator(f"#{accept.get_attribute('aria-describedby')}").inner_text()

    assert "application/json" in offered
    assert "text/csv" in offered
    assert "Body type sets only Content-Type" in hint


def test_last_request_survives_reload_and_reruns(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"remember": "me"}')
    send_and_wait(page, "Complete")

    page.reload()
    page.get_by_role("textbox", name="Request body").wait_for()
    assert '"remember": "me"' in page.get_by_role("textbox", name="Request body").inner_text()
    set_body(page, '{"other": 1}')
    page.locator("article.card").first.get_by_role("button", name="Edit & re-run").click()
    assert '"remember": "me"' in page.get_by_role("textbox", name="Request body").inner_text()


def test_target_variant_picker(page: Any, console_server: Server, tmp_path: Path) -> None:
    archive = write_model(tmp_path, BEHAVIOUR_MODEL)
    calls = tmp_path / "calls.txt"
    sagemaker = console_server.client("sagemaker")
    sagemaker.create_model(
        ModelName="two-variants",
        PrimaryContainer={
            "Image": "sageport/sklearn",
            "ModelDataUrl": str(archive),
            "Environment": {"CALLS_FILE": str(calls)},
        },
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
    )
    variants = [
        {
            "VariantName": name,
            "ModelName": "two-variants",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": 1.0,
        }
        for name in ("Blue", "Green")
    ]
    sagemaker.create_endpoint_config(EndpointConfigName="two-variants", ProductionVariants=variants)
    sagemaker.create_endpoint(EndpointName="two-variants", EndpointConfigName="two-variants")
    assert (
        wait_for_status(console_server, "two-variants", {"InService", "Failed"})["EndpointStatus"]
        == "InService"
    )

    open_test_tab(page, console_server, "two-variants")
    page.get_by_label("Target variant").select_option("Green")
    set_body(page, "{}")
    card = send_and_wait(page, "Complete")

    assert "Response from Green" in card.inner_text()
    assert "to Green" in card.locator(".card-title").inner_text()


def test_editor_renders_under_csp(
    browser: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    # CodeMirror injects its styles; if the page's Content-Security-Policy blocked
    # them, the gutter would stack above the text instead of beside it.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    tab = context.new_page()
    tab.on("console", lambda message: errors.append(message.text))
    try:
        open_test_tab(tab, console_server, behaviour_endpoint)
        set_body(tab, '{"a": 1}')

        gutter = tab.locator(".cm-gutters").bounding_box()
        content = tab.locator(".cm-content").bounding_box()
        assert gutter is not None
        assert content is not None
        assert gutter["x"] + gutter["width"] <= content["x"]
        assert abs(gutter["y"] - content["y"]) < 10
        assert tab.get_by_role("button", name="Send Request").is_enabled()
        assert not [text for text in errors if "Content Security Policy" in text]
    finally:
        context.close()


def test_image_and_binary_bodies(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"action": "image"}')

    card = send_and_wait(page, "Complete")

    image = card.get_by_role("img", name="Response image (image/png")
    expect(image).to_be_visible()
    assert image.evaluate("node => node.naturalWidth") == 24

    set_body(page, '{"action": "binary"}')
    card = send_and_wait(page, "Complete")

    assert "Binary body, 1.0 KB (application/octet-stream)." in card.inner_text()
    hex_preview = card.get_by_label("Hex preview").inner_text()
    assert hex_preview.startswith("00000000  00 01 02 03 04 05 06 07")
    assert len(hex_preview.splitlines()) == 16
    assert card.get_by_role("link", name="Download response body (1.0 KB)").is_visible()


def test_sign_in_then_test_request(page: Any, signin_server: SignInServer) -> None:
    server = signin_server.server
    key = signin_server.key
    requested_urls: list[str] = []
    page.on("request", lambda request: requested_urls.append(request.url))

    page.goto(f"{server.url}/console/endpoints/{signin_server.endpoint}?tab=test")
    page.wait_for_url("**/console/signin?next=*")
    page.get_by_label("Access key ID").fill(key.access_key_id)
    page.get_by_label("Secret access key").fill("not-the-secret-of-this-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
    screenshot(page, "sign-in-failed.png")
    page.get_by_label("Secret access key").fill(key.secret_access_key)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("textbox", name="Request body").wait_for()
    assert page.url.endswith(f"/console/endpoints/{signin_server.endpoint}?tab=test")
    expect(page.locator("#signed-in-as")).to_contain_text("alice")
    set_body(page, '{"signed": "in"}')
    card = send_and_wait(page, "Complete")
    assert '"signed"' in card.inner_text()
    card.get_by_role("button", name="Copy as curl").click()
    snippet = card.locator("pre.snippet").inner_text()
    html = page.content()
    storage = page.evaluate("() => JSON.stringify(window.localStorage)")
    cookies = page.context.cookies()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/signin")
    page.goto(server.url + "/")
    page.wait_for_url("**/console/signin?next=%2F")

    assert [cookie["httpOnly"] for cookie in cookies] == [True]
    assert [cookie["sameSite"] for cookie in cookies] == ["Strict"]
    session_cookie = cookies[0]["value"]
    for secret in (key.secret_access_key, signin_server.console_token, session_cookie):
        assert secret not in html
        assert secret not in snippet
        assert secret not in storage
        assert not [url for url in requested_urls if secret in url]
        assert secret not in server.output()


def test_console_token_sign_in(page: Any, signin_server: SignInServer) -> None:
    server = signin_server.server

    page.goto(server.url + "/")
    page.get_by_role("radio", name="Console token").check()
    page.get_by_label("Token", exact=True).fill(signin_server.console_token)
    page.get_by_role("button", name="Sign in").click()

    page.locator("tbody tr[data-endpoint]").first.wait_for()
    assert page.url == server.url + "/"
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as the console token")


def test_sign_in_lockout_shown(browser: Any, signin_server: SignInServer) -> None:
    server = signin_server.server
    # uvicorn trusts X-Forwarded-For from 127.0.0.1, so this browser counts as
    # an address of its own and locks out no other test.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        extra_http_headers={"X-Forwarded-For": "203.0.113.70"},
    )
    tab = context.new_page()
    try:
        tab.goto(server.url + "/console/signin")
        tab.get_by_label("Access key ID").fill(signin_server.key.access_key_id)
        submit = tab.get_by_role("button", name="Sign in")
        for attempt in range(11):
            tab.get_by_label("Secret access key").fill(f"wrong-guess-{attempt}")
            expect(submit).to_be_enabled()
            submit.click()
            expect(tab.get_by_role("alert")).to_be_visible()

        # The bucket refills while the test runs, so the wait is up to 30 seconds.
        expect(tab.get_by_role("alert")).to_have_text(
            re.compile(r"^Too many failed sign-ins from your address\. Wait \d+ seconds?, then")
        )
        expect(submit).to_be_disabled()
        screenshot(tab, "sign-in-locked-out.png")
    finally:
        context.close()


def test_download_of_dropped_body_explained(
    browser: Any, page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"action": "image"}')
    card = send_and_wait(page, "Complete")
    card_id = card.get_attribute("data-card-id")
    link = card.get_by_role("link", name=re.compile(r"^Download response body"))
    with page.expect_download() as download:
        link.click()
    downloaded = Path(download.value.path()).read_bytes()

    # The server drops its oldest bodies first; deleting the file has the same effect.
    result_id = (link.get_attribute("href") or "").split("/")[-1].split("?")[0]
    (console_server.data_dir / "console-results" / result_id).unlink()
    link.click()

    gone_message = "The server no longer keeps this response body"
    assert downloaded.startswith(b"\x89PNG")
    expect(card.locator(".result-gone")).to_contain_text(gone_message)
    expect(card.get_by_role("link", name=re.compile(r"^Download response body"))).to_have_count(0)

    # A later visit: the card comes back from local storage, without the image in the cache.
    later = browser.new_context(
        viewport={"width": 1280, "height": 900}, storage_state=page.context.storage_state()
    )
    try:
        tab = later.new_page()
        open_test_tab(tab, console_server, behaviour_endpoint)
        restored = tab.locator(f'article.card[data-card-id="{card_id}"]')
        expect(restored.locator(".result-gone")).to_contain_text(gone_message)
        expect(restored.get_by_role("link", name=re.compile("^Download"))).to_have_count(0)
        assert restored.get_by_role("img").count() == 0
        screenshot(restored, "card-body-gone.png")
    finally:
        later.close()


def test_trailing_comma_points_at_comma(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)

    set_body(page, '{\n  "instances": [[5.1, 3.5]],\n}')

    assert page.get_by_role("button", name="Send Request").is_disabled()
    assert page.locator("#body-status").inner_text() == (
        "Invalid JSON at line 2, column 28: Trailing comma before '}'."
    )
    set_body(page, "[1, 2, ]")
    assert page.locator("#body-status").inner_text() == (
        "Invalid JSON at line 1, column 6: Trailing comma before ']'."
    )


def test_rejected_request_has_no_logs_link(
    page: Any, console_server: Server, behaviour_endpoint: str
) -> None:
    open_test_tab(page, console_server, behaviour_endpoint)
    set_body(page, '{"rejected": true}')
    add_first_header(page, "Cookie", "session=1")

    card = send_and_wait(page, "Failed")

    assert "HeaderRejected" in card.locator("details.failure").inner_text()
    assert "Header Cookie is not allowed" in card.locator("details.failure").inner_text()
    expect(card.get_by_role("link", name="See the endpoint's logs")).to_have_count(0)


# 63 characters, the longest endpoint name SageMaker allows, ending in a long unhyphenated part.
LONG_NAME = "customer-churn-xgboost-production-euwest1-canaryshadowvariantab"


@pytest.fixture(scope="module")
def long_endpoint(
    console_server: Server, calls_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    assert len(LONG_NAME) == 63
    archive = write_model(tmp_path_factory.mktemp("long"), BEHAVIOUR_MODEL)
    description = deploy(
        console_server, LONG_NAME, str(archive), environment={"CALLS_FILE": str(calls_file)}
    )
    assert description["EndpointStatus"] == "InService", description
    return LONG_NAME


def page_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_narrow_window_long_name_fits(
    browser: Any, console_server: Server, long_endpoint: str
) -> None:
    context = browser.new_context(viewport={"width": 400, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    try:
        tab.goto(console_server.url + "/")
        tab.locator(f'tbody tr[data-endpoint="{long_endpoint}"]').wait_for()
        list_width = page_width(tab)
        name_cell = tab.locator(f'tbody tr[data-endpoint="{long_endpoint}"] td').first
        name_box = name_cell.bounding_box()

        open_test_tab(tab, console_server, long_endpoint)
        tab.get_by_text("Custom URL and headers").click()
        tab.get_by_role("button", name="Add header").click()
        set_body(tab, '{"narrow": true}')
        card = send_and_wait(tab, "Complete")
        screenshot(tab, "narrow-test-tab.png")
        test_width = page_width(tab)
        card_box = card.bounding_box()
        fields_box = card.locator(".card-fields").bounding_box()
        crumb = tab.locator("#breadcrumb li").last
        crumb_box = crumb.bounding_box()
        top_bar_box = tab.locator(".top-bar").bounding_box()
    finally:
        context.close()

    assert list_width == 400
    assert name_box is not None
    assert name_box["width"] >= 150
    assert test_width == 400
    assert card_box is not None
    assert fields_box is not None
    assert fields_box["x"] + fields_box["width"] <= card_box["x"] + card_box["width"]
    assert crumb_box is not None
    assert top_bar_box is not None
    assert crumb_box["x"] + crumb_box["width"] <= top_bar_box["x"] + top_bar_box["width"]
    assert top_bar_box["height"] < 60
