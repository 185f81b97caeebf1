"""vLLM's /tokenize and /detokenize, in its request and response shapes:

    POST /tokenize   {model?, prompt, add_special_tokens=true}            -> {count, max_model_len,
                     {model?, messages, add_generation_prompt=true,          tokens[, token_strs]}
                      add_special_tokens=false, tools?}
    POST /detokenize {model?, tokens}                                     -> {prompt}

Chat messages go through the chat template exactly as /v1/chat/completions renders them, so a
client can count a conversation's tokens before sending it. Both run off the event loop and
need the API key when one is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request

from llmserve import protocol
from llmserve.prompts import check_token_ids, encode_text, in_thread, render_chat


def add_tokenize_routes(
    app: FastAPI,
    authorize: Callable[[Request], None],
    backend_or_503: Callable[[], Any],
    check_model: Callable[[str | None, Any], None],
    read: Callable[[Request, type[Any]], Any],
) -> None:
    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        authorize(request)
        backend = backend_or_503()
        body: protocol.TokenizeRequest = await read(request, protocol.TokenizeRequest)
        check_model(body.model, backend)
        if body.messages is not None:
            ids = await in_thread(
                render_chat,
                backend.tokenizer,
                body.messages,
                body.tools,
                None,
                body.add_generation_prompt is not False,
            )
        else:
            special = body.add_special_tokens is not False
            ids = await in_thread(encode_text, backend.tokenizer, body.prompt or "", special)
        answer: dict[str, Any] = {
            "count": len(ids),
            "max_model_len": backend.engine.max_model_len,
            "tokens": ids,
        }
        if body.return_token_strs:
            answer["token_strs"] = [backend.token_text(t) for t in ids]
        return answer

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict[str, Any]:
        authorize(request)
        backend = backend_or_503()
        body: protocol.DetokenizeRequest = await read(request, protocol.DetokenizeRequest)
        check_model(body.model, backend)
        ids = check_token_ids(body.tokens, backend.vocab_size, "tokens")
        text = await in_thread(backend.tokenizer.decode, ids)
        return {"prompt": text}
