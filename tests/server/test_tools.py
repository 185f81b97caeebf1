"""Tools: the parsers of both format families (whole answers and streamed at every split), the
choice of parser, and over HTTP with a chat template that renders tools (the bundled SmolLM2
tokenizer with a Hermes-style template written here): tools reach the prompt, history with
tool calls and tool results is accepted, forced calls come back as tool_calls, also streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llmserve.tool_parsers import pick_parser
from llmserve.tool_parsers.base import CallEvent, ContentEvent
from llmserve.tool_parsers.forced import required_call, required_schema
from llmserve.tool_parsers.glm import GlmParser
from llmserve.tool_parsers.hermes import HermesParser

from tests.llm_server import RunningServer, start_server
from tests.server.tool_specs import WEATHER

NAMES = frozenset({"get_weather", "add"})
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        },
    },
}

HERMES_ANSWER = (
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": '
    '"Paris"}}\n</tool_call>\n<tool_call>{"name": "add", "arguments": {"a": 1, '
    '"b": 2}}</tool_call>'
)
GLM3_ANSWER = 'get_weather\n```python\ntool_call(city="Beijing", days=[1, 2])\n```'
GLM4_ANSWER = 'get_weather\n{"city": "Beijing"}'


def replay(parser: Any, text: str, cut: int) -> tuple[str, list[tuple[str, str]]]:
    stream = parser.streamer(NAMES)
    events = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentEvent))
    calls = [(e.call.name, e.call.arguments) for e in events if isinstance(e, CallEvent)]
    return content, calls


def test_hermes_parses_every_tagged_call() -> None:
    parsed = HermesParser().parse(HERMES_ANSWER, NAMES)
    assert parsed.content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("add", {"a": 1, "b": 2}),
    ]
    assert len({c.id for c in parsed.calls}) == 2
    assert HermesParser().parse("just text", NAMES).content == "just text"
    broken = "x <tool_call>{not json</tool_call>"
    assert (
        HermesParser().parse(broken, NAMES).content == broken
        and not HermesParser().parse(broken, NAMES).calls
    )


@pytest.mark.parametrize("cut", range(0, len(HERMES_ANSWER) + 1, 7))
def test_hermes_streaming_matches_whole_at_any_split(cut: int) -> None:
    content, calls = replay(HermesParser(), HERMES_ANSWER, cut)
    assert "<tool_call" not in content and content.strip() == "Let me check."
    assert [name for name, _ in calls] == ["get_weather", "add"]


def test_hermes_stream_holds_back_only_a_possible_tag() -> None:
    stream = HermesParser().streamer(NAMES)
    assert stream.feed("Hello <tool") == [ContentEvent("Hello ")]
    assert stream.feed(" is a word") == [ContentEvent("<tool is a word")]


def test_glm_parses_chatglm3_python_calls_and_glm4_json() -> None:
    three = GlmParser().parse(GLM3_ANSWER, NAMES)
    assert three.content is None
    assert [(c.name, json.loads(c.arguments)) for c in three.calls] == [
        ("get_weather", {"city": "Beijing", "days": [1, 2]})
    ]
    four = GlmParser().parse(GLM4_ANSWER, NAMES)
    assert json.loads(four.calls[0].arguments) == {"city": "Beijing"}
    assert GlmParser().parse("\nA plain answer.", NAMES).content == "\nA plain answer."
    assert GlmParser().parse("unknown_fn\n{}", NAMES).calls == ()


def test_glm_never_evaluates_code() -> None:
    evil = 'get_weather\n```python\ntool_call(city=__import__("os").system("touch /tmp/pwn"))\n```'
    parsed = GlmParser().parse(evil, NAMES)
    assert parsed.calls == () and parsed.content == evil
    assert not Path("/tmp/pwn").exists()


@pytest.mark.parametrize("cut", [0, 3, 11, 12, 20, len(GLM3_ANSWER)])
def test_glm_streaming_matches_whole(cut: int) -> None:
    assert replay(GlmParser(), GLM3_ANSWER, cut)[1] == [
        ("get_weather", '{"city": "Beijing", "days": [1, 2]}')
    ]
    assert replay(GlmParser(), "\nplain text here", cut) == ("\nplain text here", [])


def test_the_parser_follows_the_chat_template() -> None:
    class Tok:
        def __init__(self, template: str | None) -> None:
            self.chat_template = template

    assert pick_parser(Tok("...<|observation|>...")).name == "glm"
    assert pick_parser(Tok("<tool_call>")).name == "hermes"
    assert pick_parser(Tok(None)).name == "hermes"
    assert pick_parser(Tok("<tool_call>"), "glm").name == "glm"
    with pytest.raises(ValueError, match="allowed: auto, hermes, glm"):
        pick_parser(Tok(None), "llama3")


def test_required_reads_the_hermes_object() -> None:
    schema = json.loads(
        required_schema([("get_weather", WEATHER["function"]["parameters"]), ("add", None)])
    )
    assert [o["properties"]["name"]["const"] for o in schema["anyOf"]] == ["get_weather", "add"]
    call = required_call('{"name": "add", "arguments": {"a": 1}}', NAMES)
    assert call is not None and json.loads(call.arguments) == {"a": 1}
    assert required_call('{"name": "other", "arguments": {}}', NAMES) is None


# ------------------------------------------------------------------------- over HTTP
TOOL_TEMPLATE = """{%- if tools %}<|im_start|>system
You may call these tools:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}Answer a call as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>
{% endif %}{%- for m in messages %}<|im_start|>{{ m.role }}
{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ {"name": c.function.name,
"arguments": c.function.arguments} | tojson }}</tool_call>{% endfor %}{% else %}{{ m.content }}
{%- endif %}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from llmserve.models import bundled_smollm2_gguf, load_gguf_tokenizer

    directory = tmp_path_factory.mktemp("tool-tokenizer")
    tokenizer = load_gguf_tokenizer(bundled_smollm2_gguf())
    tokenizer.chat_template = TOOL_TEMPLATE
    tokenizer.save_pretrained(directory)
    server = start_server(
        tmp_path_factory.mktemp("tools"),
        "random:tiny",
        tokenizer=str(directory),
        max_model_len="1024",
    )
    yield server
    server.stop()


def rendered(server: RunningServer, **body: Any) -> str:
    with server.http() as http:
        ids = http.post("/tokenize", json=body).json()["tokens"]
        return http.post("/detokenize", json={"tokens": ids}).json()["prompt"]


def test_tools_reach_the_chat_template(tool_server: RunningServer) -> None:
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    prompt = rendered(tool_server, messages=messages, tools=[WEATHER])
    assert '"name": "get_weather"' in prompt and "Weather in a city" in prompt
    chat = tool_server.client().chat.completions.create(
        model="random-tiny", messages=messages, tools=[WEATHER], max_tokens=2
    )  # type: ignore
    with tool_server.http() as http:
        counted = http.post("/tokenize", json={"messages": messages, "tools": [WEATHER]}).json()
    assert chat.usage is not None and chat.usage.prompt_tokens == counted["count"]
    none = tool_server.client().chat.completions.create(
        model="random-tiny", messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=2
    )  # type: ignore[arg-type]
    assert none.usage is not None and none.usage.prompt_tokens < chat.usage.prompt_tokens


def test_history_with_tool_calls_and_results_is_accepted(tool_server: RunningServer) -> None:
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    prompt = rendered(tool_server, messages=history, tools=[WEATHER])
    # the arguments reach the template as an object (rendered as JSON, not a quoted string)
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert "sunny, 21 C" in prompt
    reply = tool_server.client().chat.completions.create(
        model="random-tiny", messages=history, tools=[WEATHER], max_tokens=3
    )  # type: ignore
    assert reply.choices[0].finish_reason == "length"


def test_a_named_tool_choice_answers_with_that_call(tool_server: RunningServer) -> None:
    client = tool_server.client()
    forced = {"type": "function", "function": {"name": "get_weather"}}
    reply = client.chat.completions.create(
        model="random-tiny",
        messages=[{"role": "user", "content": "Paris?"}],
        tools=[WEATHER, ADD],
        tool_choice=forced,
        max_tokens=6,
    )  # type: ignore[arg-type]
    message = reply.choices[0].message
    assert message.content is None and message.tool_calls
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.id.startswith("call_")
    chunks = list(
        client.chat.completions.create(
            model="random-tiny",
            messages=[{"role": "user", "content": "Paris?"}],
            tools=[WEATHER, ADD],
            tool_choice=forced,
            max_tokens=6,
            temperature=0,
            stream=True,
        )
    )  # type: ignore[arg-type]
    pieces = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].id and pieces[0].function and pieces[0].function.name == "get_weather"
    assert all(p.index == 0 for p in pieces)
    whole = client.chat.completions.create(
        model="random-tiny",
        messages=[{"role": "user", "content": "Paris?"}],
        tools=[WEATHER, ADD],
        tool_choice=forced,
        max_tokens=6,
        temperature=0,
    )  # type: ignore[arg-type]
    streamed_args = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert whole.choices[0].message.tool_calls
    assert streamed_args == whole.choices[0].message.tool_calls[0].function.arguments
