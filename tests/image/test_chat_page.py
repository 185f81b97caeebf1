"""The web chat page in headless Chromium (Debian's `chromium`, driven by Playwright's Python API)
against the real server: a person types, an answer streams in. Screenshots go to
build/screenshots/ so a human (or the session) can look at them."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.llm_server import REPO_ROOT, RunningServer

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
]
# Proof of streaming by events, not by timing: the page renders an answer's markdown into its
# `.md` element with one `replaceChildren` per content chunk, so each render is one
# MutationObserver record on that element; the record's added nodes are the rendered answer at
# that moment (they are never changed afterwards, only replaced), so a slow machine that delivers
# many SSE events in one read still shows every intermediate render. Recorded per render: the
# length of the rendered text. The SSE events themselves are counted as the page parses them.
RECORD_GROWTH = """
window.__growth = [];
window.__sseEvents = 0;
document.addEventListener('DOMContentLoaded', () => {
  new MutationObserver((records) => {
    for (const record of records) {
      const target = record.target;
      if (!(target.matches && target.matches('.msg.assistant > .md'))) continue;
      if (!record.addedNodes.length) continue;
      let length = 0;
      for (const node of record.addedNodes) length += node.textContent.length;
      window.__growth.push(length);
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
    page: Page, llm_server: RunningServer
) -> None:
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
    # Content chunks became their own renders of the answer so far, as they arrived. Markdown may
    # shorten the text by a few characters when a closing `*` or `` ` `` arrives, so the proof is
    # renders of distinct lengths, from one chunk to the whole answer, and no more renders than
    # chunks.
    steps = [n for n in growth if n > 0]
    assert len(steps) >= 3 and len(set(steps)) >= 3 and steps[0] < steps[-1], (
        f"bubble did not grow in steps: {growth}"
    )
    assert len(steps) <= events, f"{len(steps)} renders from {events} SSE chunks"
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
    # Playwright's own polling (its isolated world), not wait_for_function: the page's CSP
    # forbids the eval that a string predicate needs once it has to poll.
    expect(page.locator(".msg.assistant").first).to_have_text(re.compile(r"\S"), timeout=30_000)
    page.click("#stop")
    page.wait_for_selector(".msg.assistant .note", timeout=10_000)
    assert "(stopped)" in page.inner_text(".msg.assistant .note")
    assert page.is_visible("#send") and not page.is_visible("#stop")


def sse(*chunks: dict) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def delta(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def test_model_output_is_text_not_html(page: Page, llm_server: RunningServer) -> None:
    evil = '<img src=x onerror="window.__xss=1"><b>bold</b>'

    def fake_reply(route: Route) -> None:
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=sse(delta(evil[:10]), delta(evil[10:])),
        )

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
            route.fulfill(
                status=429,
                headers={"Retry-After": "3", "Content-Type": "application/json"},
                body=json.dumps(
                    {
                        "error": {
                            "message": "queue full",
                            "type": "rate_limit",
                            "param": None,
                            "code": "queue_full",
                        }
                    }
                ),
            )
        else:
            route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream"},
                body=sse(delta("fine now")),
            )

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
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=sse(
                delta(
                    "A reply that is long enough to wrap over several lines on a phone "
                    "screen, so the layout must **not** overflow sideways:\n\n"
                    "1. even with a list\n2. and a code block with a long line\n\n"
                    "```sh\nkubectl -n llm logs deploy/llmserve --since=10m --timestamps "
                    "--all-containers=true | grep -i error\n```\n"
                ),
                usage(42),
            ),
        ),
    )
    page.goto(llm_server.url + "/")
    ask(page, "Does it fit?")
    wait_reply_done(page)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone screen"
    composer = page.locator("#composer").bounding_box()
    assert composer is not None and composer["y"] + composer["height"] <= 844 + 1
    code = page.locator(".md .code-block").bounding_box()
    assert code is not None and code["x"] + code["width"] <= 390, "the code block sticks out"
    assert page.is_hidden("#sidebar")  # the conversation list is a drawer on a phone
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-phone.png"))
    page.click("#toggle-chats")
    page.wait_for_selector("#sidebar .conversation")
    page.screenshot(path=str(SCREENSHOTS / "chat-phone-drawer.png"))
    page.click(".conversation .open")  # opening one closes the drawer
    page.wait_for_selector("#sidebar", state="hidden")
    context.close()


# ---------------------------------------------------------------- markdown, history, readiness


def use_key(page: Page, key: str | None) -> None:
    """The API key in sessionStorage before the page's own script runs, on every load."""
    page.add_init_script(f"sessionStorage.setItem('llmserve.apiKey', {json.dumps(key)})")


def usage(completion_tokens: int) -> dict:
    return {
        "choices": [],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": completion_tokens,
            "total_tokens": 5 + completion_tokens,
        },
    }


class FakeChat:
    """Answers /v1/chat/completions with the given replies in turn and keeps each request body."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.bodies: list[dict] = []

    def __call__(self, route: Route) -> None:
        self.bodies.append(json.loads(route.request.post_data or "{}"))
        text = self.replies[min(len(self.bodies), len(self.replies)) - 1]
        half = len(text) // 2
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=sse(delta(text[:half]), delta(text[half:]), usage(7)),
        )


MARKDOWN_REPLY = """Here is **bold** and a list:

- one
- two

```python
print("hi")
```

<script>window.__xss=1</script>

<img src=x onerror="window.__xss=2"> inline <img src=y onerror="window.__xss=3">

[click me](javascript:window.__xss=4), [encoded](javascript&#58;window.__xss=5),
![pixel](https://tracker.example/p.gif) and [docs](https://example.com/docs).

<a href="javascript:window.__xss=6" onclick="window.__xss=7">raw link</a>
"""


def test_markdown_is_rendered_and_sanitized(page: Page, llm_server: RunningServer) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=llm_server.url)
    problems: list[str] = []  # a CSP violation or a script error would show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    use_key(page, llm_server.api_key)
    page.route("**/v1/chat/completions", FakeChat(MARKDOWN_REPLY))
    page.goto(llm_server.url + "/")
    ask(page, "Show me markdown")
    wait_reply_done(page)
    md = page.locator(".msg.assistant .md")
    assert md.locator("strong").inner_text() == "bold"
    assert md.locator("ul > li").all_inner_texts() == ["one", "two"]
    assert md.locator("pre code").inner_text() == 'print("hi")\n'
    # Every payload stayed text or lost its teeth: no script, image or handler ran or exists.
    assert page.evaluate("window.__xss") is None
    assert page.locator("#messages script, #messages img, #messages iframe").count() == 0
    handlers = page.evaluate("""[...document.querySelectorAll('#messages *')].flatMap(
        el => [...el.attributes].map(a => a.name)).filter(n => n.startsWith('on'))""")
    assert handlers == []
    hrefs = page.evaluate(
        "[...document.querySelectorAll('#messages a')].map(a => a.getAttribute('href'))"
    )
    assert hrefs and all(h is None or h.startswith("https://") for h in hrefs), hrefs
    assert "https://example.com/docs" in hrefs
    docs = md.locator("a", has_text="docs")
    assert docs.get_attribute("rel") == "noopener noreferrer nofollow"
    assert docs.get_attribute("target") == "_blank"
    text = md.inner_text()
    assert "<script>window.__xss=1</script>" in text  # raw HTML is shown as what it is
    assert "click me" in text and "pixel" in text
    # The code block's copy button copies the code, without the button's own label.
    assert md.locator(".code-block .lang").get_attribute("data-lang") == "python"
    md.locator(".code-block .copy-code").click()
    page.wait_for_selector('.code-block .copy-code[data-copied="yes"]')
    assert page.evaluate("navigator.clipboard.readText()") == 'print("hi")\n'
    assert problems == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-markdown-desktop.png"))
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(SCREENSHOTS / "chat-markdown-dark.png"))


def test_page_works_behind_a_path_prefix(page: Page, llm_server: RunningServer) -> None:
    """An ingress that serves the app at /chat/: every URL the page uses is relative."""
    prefix = llm_server.url + "/chat/"
    outside: list[str] = []

    def strip_prefix(route: Route) -> None:
        response = route.fetch(url=llm_server.url + "/" + route.request.url[len(prefix) :])
        route.fulfill(response=response)

    page.on("request", lambda r: None if r.url.startswith(prefix) else outside.append(r.url))
    page.route(prefix + "**", strip_prefix)
    use_key(page, llm_server.api_key)
    settings = json.dumps(json.dumps({"max-tokens": "8"}))  # a short answer is enough here
    page.add_init_script(f"localStorage.setItem('llmserve.settings', {settings})")
    page.goto(prefix)
    page.wait_for_selector('#status[data-state="ready"]')
    ask(page, "Behind a prefix?")
    wait_reply_done(page)
    assert page.inner_text(".msg.assistant .md").strip()
    assert page.locator(".msg.error").count() == 0
    assert outside == [], outside


def test_readiness_is_noticed_without_reload(page: Page, llm_server: RunningServer) -> None:
    use_key(page, llm_server.api_key)
    phase = {"now": "unreachable"}
    seen: list[str] = []

    def ready(route: Route) -> None:
        seen.append(phase["now"])
        if phase["now"] == "unreachable":
            route.abort("connectionrefused")
        elif phase["now"] == "loading":
            route.fulfill(
                status=503,
                headers={"Content-Type": "application/json"},
                body=json.dumps(
                    {
                        "status": "loading",
                        "error": {
                            "message": "not ready: loading",
                            "type": "service_unavailable",
                            "param": None,
                            "code": "loading",
                        },
                    }
                ),
            )
        else:
            route.continue_()  # the real server, which is ready

    page.route("**/ready", ready)
    page.goto(llm_server.url + "/")
    status = page.locator("#status")
    page.wait_for_selector('#status[data-state="unreachable"]', timeout=10_000)
    assert "server unreachable" in status.inner_text()
    phase["now"] = "loading"
    page.wait_for_selector('#status[data-state="loading"]', timeout=30_000)
    assert status.inner_text() == "model loading…"  # not "unreachable": the server did answer
    phase["now"] = "ready"
    page.wait_for_selector('#status[data-state="ready"]', timeout=30_000)
    assert status.inner_text() == "ready"
    page.wait_for_selector("#model option", state="attached")
    assert seen[:1] == ["unreachable"] and "loading" in seen and seen[-1] == "ready"


def conversation_titles(page: Page) -> list[str]:
    return page.locator("#conversations .conversation .open").all_inner_texts()


def test_history_survives_reload_and_conversations_switch_and_delete(
    page: Page, llm_server: RunningServer
) -> None:
    page.route("**/v1/chat/completions", FakeChat("Answer **one**", "Answer **two**"))
    page.goto(llm_server.url + "/")
    assert conversation_titles(page) == [] and page.is_visible("#no-conversations")
    ask(page, "first question")
    wait_reply_done(page)
    page.click("#new-chat")
    assert page.locator("#messages .turn").count() == 0
    ask(page, "second question")
    page.wait_for_selector(".msg.assistant:not(.streaming) strong")
    assert conversation_titles(page) == ["second question", "first question"]

    page.reload()
    page.wait_for_selector(".msg.assistant .md strong")
    assert page.locator(".msg.user").all_inner_texts() == ["second question"]
    assert page.inner_text(".msg.assistant .md") == "Answer two"
    assert conversation_titles(page) == ["second question", "first question"]
    assert page.locator(".conversation.current .open").inner_text() == "second question"

    page.click("#conversations .open >> text=first question")
    page.wait_for_selector(".msg.user >> text=first question")
    assert page.inner_text(".msg.assistant .md") == "Answer one"
    assert page.locator(".conversation.current .open").inner_text() == "first question"
    page.click(".conversation.current .delete")  # the one on screen: the other one opens
    page.wait_for_selector(".msg.user >> text=second question")
    assert conversation_titles(page) == ["second question"]
    page.reload()
    page.wait_for_selector(".msg.user")
    assert conversation_titles(page) == ["second question"]
    page.click(".conversation .delete")
    assert conversation_titles(page) == [] and page.locator("#messages .turn").count() == 0
    page.reload()
    page.wait_for_selector("#empty", state="visible")
    assert conversation_titles(page) == []


def test_regenerate_resends_the_same_history_and_copy_copies(
    page: Page, llm_server: RunningServer
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=llm_server.url)
    fake = FakeChat("first try", "second *try*")
    page.route("**/v1/chat/completions", fake)
    page.goto(llm_server.url + "/")
    ask(page, "Say something")
    wait_reply_done(page)
    assert page.locator(".turn.user .regenerate").count() == 0
    page.click(".turn.assistant .regenerate")
    page.wait_for_selector(".msg.assistant:not(.streaming) em")
    wait_reply_done(page)
    assert len(fake.bodies) == 2
    assert (
        fake.bodies[1]["messages"]
        == fake.bodies[0]["messages"]
        == [{"role": "user", "content": "Say something"}]
    )
    assert page.locator(".msg.assistant").count() == 1
    assert page.inner_text(".msg.assistant .md") == "second try"
    assert page.locator(".msg.user").count() == 1
    page.click(".turn.assistant .act >> text=Copy")
    page.wait_for_selector('.turn.assistant .act[data-copied="yes"]')
    assert page.evaluate("navigator.clipboard.readText()") == "second *try*"  # the markdown
    page.click(".turn.user .act >> text=Copy")
    page.wait_for_selector('.turn.user .act[data-copied="yes"]')
    assert page.evaluate("navigator.clipboard.readText()") == "Say something"
    page.reload()  # the regenerated answer is the one kept
    page.wait_for_selector(".msg.assistant em")
    assert page.inner_text(".msg.assistant .md") == "second try"


def test_tokens_per_second_under_each_answer(page: Page, llm_server: RunningServer) -> None:
    use_key(page, llm_server.api_key)
    page.goto(llm_server.url + "/")
    page.wait_for_selector('#status[data-state="ready"]')
    set_max_tokens(page, 24)
    with page.expect_request("**/v1/chat/completions") as request_info:
        ask(page, "Count to ten")
    sent = json.loads(request_info.value.post_data or "{}")
    assert sent["stream_options"] == {"include_usage": True}
    wait_reply_done(page)
    speed = page.inner_text(".turn.assistant .speed")
    # From the real server's usage chunk: exact tokens, a speed and the time to the first token.
    assert re.fullmatch(r"\d+ tokens · \d+\.\d tok/s · first token \d+\.\d\d s", speed), speed
    tokens = int(speed.split()[0])
    assert 1 < tokens <= 24
    page.reload()  # kept with the conversation
    page.wait_for_selector(".turn.assistant .speed:not(:empty)")
    assert page.inner_text(".turn.assistant .speed") == speed


def test_tokens_estimated_from_chunks_without_usage(page: Page, llm_server: RunningServer) -> None:
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=sse(delta("one "), delta("two "), delta("three")),
        ),
    )
    page.goto(llm_server.url + "/")
    ask(page, "no usage here")
    wait_reply_done(page)
    assert page.inner_text(".turn.assistant .speed").startswith("≈3 tokens")


def test_settings_reach_the_request_body(page: Page, llm_server: RunningServer) -> None:
    fake = FakeChat("ok")
    page.route("**/v1/chat/completions", fake)
    page.goto(llm_server.url + "/")
    page.click("#settings summary")
    page.fill("#max-tokens", "33")
    page.fill("#temperature", "0.3")
    page.fill("#top-p", "1.5")
    page.fill("#seed", "42")
    page.fill("#stop-seqs", "END\n\\n")
    page.fill("#system-prompt", "Be brief.")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-settings-desktop.png"))
    ask(page, "settings?")
    error = page.wait_for_selector(".msg.error")
    assert error is not None and "Top p" in error.inner_text() and "1.5" in error.inner_text()
    assert fake.bodies == [] and page.input_value("#prompt") == "settings?"  # nothing was sent
    page.fill("#top-p", "0.9")
    page.press("#prompt", "Enter")
    wait_reply_done(page)
    body = fake.bodies[0]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "settings?"},
    ]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        33,
        0.3,
        0.9,
        42,
    )
    assert body["stop"] == ["END", "\n"] and body["stream"] is True
    page.reload()  # settings are kept in the browser too
    assert page.input_value("#top-p") == "0.9" and page.input_value("#seed") == "42"


def test_no_console_errors_on_load_and_forget_key_only_with_a_key(
    page: Page, llm_server: RunningServer
) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    use_key(page, llm_server.api_key)
    page.goto(llm_server.url + "/")
    page.wait_for_selector('#status[data-state="ready"]')
    page.wait_for_selector("#model option", state="attached")
    page.wait_for_load_state("networkidle")
    assert problems == []
    icon = page.request.get(llm_server.url + "/static/favicon.svg")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page.click("#settings summary")
    assert page.is_visible("#forget-key")
    page.click("#forget-key")
    assert page.is_hidden("#forget-key")
    assert page.evaluate("sessionStorage.getItem('llmserve.apiKey')") is None


def test_forget_key_is_hidden_until_a_key_is_given(page: Page, llm_server: RunningServer) -> None:
    page.goto(llm_server.url + "/")
    page.click("#settings summary")
    page.wait_for_selector("#key-form:not([hidden])")  # /v1/models said 401
    assert page.is_hidden("#forget-key")
    page.fill("#api-key", llm_server.api_key)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#forget-key", state="visible")
    page.wait_for_selector('#status[data-state="ready"]')
    page.wait_for_selector("#model option", state="attached")
    assert page.inner_text("#status") == "ready"
