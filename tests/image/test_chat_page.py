"""The web chat page in headless Chromium (Debian's `chromium`, driven by Playwright's Python API)
against the real server: a person types, an answer streams in. Screenshots go to
build/screenshots/ so a human (or the session) can look at them."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.llm_server import REPO_ROOT, RunningServer

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run",
    "--disable-extensions",
]
# Proof of streaming by events, not by timing: every text node the page puts into an assistant
# bubble is recorded from the MutationObserver's records (one per `textContent =`), so a slow
# machine that delivers many SSE events in one read still shows every intermediate update.
# The SSE events themselves are counted as the page parses them.
RECORD_GROWTH = """
window.__growth = [];
window.__sseEvents = 0;
document.addEventListener('DOMContentLoaded', () => {
  new MutationObserver((records) => {
    for (const record of records) {
      const bubble = record.target.closest && record.target.closest('.msg.assistant');
      if (!bubble) continue;
      for (const node of record.addedNodes) {
        if (node.nodeType === Node.TEXT_NODE) window.__growth.push(node.data.length);
      }
    }
  }).observe(document.getElementById('messages'), {subtree: true, childList: true});
});
const parse = JSON.parse;
JSON.parse = function (text, ...rest) {
  const value = parse.call(this, text, ...rest);
  if (value && value.object === 'chat.completion.chunk') window.__sseEvents += 1;
  return value;
};
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install -y chromium` (Debian package)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    page = context.new_page()
    page.add_init_script(RECORD_GROWTH)
    yield page
    context.close()


def set_max_tokens(page: Page, n: int) -> None:
    page.click("#settings summary")
    page.fill("#max-tokens", str(n))
    page.click("#settings summary")


def ask(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_reply_done(page: Page) -> None:
    page.wait_for_selector(".msg.assistant:not(.streaming)", timeout=60_000)
    page.wait_for_selector("#send", state="visible", timeout=60_000)


def test_question_gets_a_streamed_answer_and_conversation_is_kept(
        page: Page, llm_server: RunningServer) -> None:
    page.goto(llm_server.url + "/")
    assert page.title() == "llm-uk8s chat"
    set_max_tokens(page, 40)
    ask(page, "What is UK8S?")
    # The server wants a key: the page says so and asks for it, then retries by itself.
    page.wait_for_selector("#key-form:not([hidden])", timeout=30_000)
    assert "API key" in page.inner_text(".msg.error")
    page.fill("#api-key", llm_server.api_key)
    page.press("#api-key", "Enter")
    wait_reply_done(page)
    assert page.locator(".msg.error").count() == 0  # the key fixed it: the notice goes
    assert page.is_hidden("#key-form")

    growth = page.evaluate("window.__growth")
    events = page.evaluate("window.__sseEvents")
    reply = page.inner_text(".msg.assistant")
    assert reply.strip(), "the assistant bubble ended empty"
    assert events >= 3, f"the page parsed {events} SSE chunks: the answer was not streamed"
    # Each content chunk became its own, longer text in the bubble: rendered as it arrived.
    steps = [n for n in growth if n > 0]
    grew = all(a < b for a, b in itertools.pairwise(steps))
    assert len(steps) >= 3 and grew, f"bubble did not grow in steps: {growth}"
    assert page.evaluate("sessionStorage.getItem('llmserve.apiKey')") == llm_server.api_key
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-desktop.png"))

    with page.expect_request("**/v1/chat/completions") as request_info:
        ask(page, "And a second question?")
    sent = json.loads(request_info.value.post_data or "{}")
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "What is UK8S?"
    assert sent["stream"] is True
    wait_reply_done(page)
    assert page.locator(".msg.assistant").count() == 2


def test_stop_button_ends_a_long_reply(page: Page, llm_server: RunningServer) -> None:
    page.goto(llm_server.url + "/")
    page.evaluate("key => sessionStorage.setItem('llmserve.apiKey', key)", llm_server.api_key)
    set_max_tokens(page, 1500)
    ask(page, "Tell me a very long story.")
    page.wait_for_function(
        "() => { const b = document.querySelector('.msg.assistant'); "
        "return b && b.textContent.length > 0; }", timeout=30_000)
    page.click("#stop")
    page.wait_for_selector(".msg.assistant .note", timeout=10_000)
    assert "(stopped)" in page.inner_text(".msg.assistant .note")
    assert page.is_visible("#send") and not page.is_visible("#stop")


def sse(*chunks: dict) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def delta(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def test_model_output_is_text_not_html(page: Page, llm_server: RunningServer) -> None:
    evil = "<img src=x onerror=\"window.__xss=1\"><b>bold</b>"

    def fake_reply(route: Route) -> None:
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                      body=sse(delta(evil[:10]), delta(evil[10:])))

    page.route("**/v1/chat/completions", fake_reply)
    page.goto(llm_server.url + "/")
    ask(page, "<script>window.__xss=2</script>")
    wait_reply_done(page)
    assert page.inner_text(".msg.assistant") == evil
    assert page.inner_text(".msg.user") == "<script>window.__xss=2</script>"
    assert page.locator("#messages img, #messages b, #messages script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_busy_server_says_retry(page: Page, llm_server: RunningServer) -> None:
    calls: list[int] = []

    def busy_then_ok(route: Route) -> None:
        calls.append(1)
        if len(calls) == 1:
            route.fulfill(status=429,
                          headers={"Retry-After": "3", "Content-Type": "application/json"},
                          body=json.dumps({"error": {"message": "queue full", "type": "rate_limit",
                                                     "param": None, "code": "queue_full"}}))
        else:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                          body=sse(delta("fine now")))

    page.route("**/v1/chat/completions", busy_then_ok)
    page.goto(llm_server.url + "/")
    ask(page, "hello")
    error = page.wait_for_selector(".msg.error")
    assert error is not None
    text = error.inner_text()
    assert "busy" in text and "retry in 3 s" in text and "queue full" in text
    page.click(".msg.error button")
    wait_reply_done(page)
    assert page.inner_text(".msg.assistant") == "fine now"
    assert page.locator(".msg.user").count() == 1  # a retry does not repeat the question


def test_phone_layout_fits_the_screen(browser: Browser, llm_server: RunningServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"},
        body=sse(delta("A reply that is long enough to wrap over several lines on a phone "
                       "screen, so the layout must not overflow sideways."))))
    page.goto(llm_server.url + "/")
    ask(page, "Does it fit?")
    wait_reply_done(page)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone screen"
    composer = page.locator("#composer").bounding_box()
    assert composer is not None and composer["y"] + composer["height"] <= 844 + 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-phone.png"))
    context.close()
