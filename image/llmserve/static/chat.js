// llm-uk8s web chat. Streams /v1/chat/completions over SSE with fetch(); text is always set with
// textContent (never innerHTML), so whatever the model or an error body says cannot become markup.
// URLs are relative so the page also works behind a path prefix (an ingress at /chat/, say).
"use strict";

const KEY_STORAGE = "llmserve.apiKey";
const $ = (id) => document.getElementById(id);

const state = {
  history: [],          // [{role, content}] sent with every request: the conversation
  controller: null,     // AbortController of the reply being streamed
  lastUserText: null,   // for "Retry" after a refusal
};

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey()) h.Authorization = "Bearer " + apiKey();
  return h;
}

function setStatus(text, bad = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function addBubble(role, text) {
  $("empty").hidden = true;
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.dataset.role = role;
  div.textContent = text;
  $("messages").appendChild(div);
  scrollToEnd();
  return div;
}

function addNote(bubble, text) {
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = text;
  bubble.appendChild(note);
}

function showError(message, { retry = false } = {}) {
  const div = addBubble("error", message);
  if (retry && state.lastUserText !== null) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Retry";
    button.addEventListener("click", () => {
      div.remove();
      send(state.lastUserText, { resend: true });
    });
    div.appendChild(document.createElement("br"));
    div.appendChild(button);
  }
  return div;
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("prompt").disabled = busy;
}

async function errorMessage(response) {
  // OpenAI-style body: {"error": {"message": ...}}; fall back to the status line.
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return String(body.error.message);
  } catch (_) { /* not JSON */ }
  return "HTTP " + response.status + " " + response.statusText;
}

async function handleRefusal(response) {
  const message = await errorMessage(response);
  if (response.status === 401) {
    showError("The server needs a valid API key: " + message).dataset.kind = "auth";
    $("key-form").hidden = false;
    $("api-key").focus();
  } else if (response.status === 429) {
    const after = response.headers.get("Retry-After");
    showError("The server is busy" + (after ? ", retry in " + after + " s" : "") + ": " + message,
      { retry: true });
  } else if (response.status === 503) {
    showError("The model is not ready yet: " + message, { retry: true });
  } else {
    showError("Request refused (" + response.status + "): " + message, { retry: true });
  }
}

// Parse an SSE byte stream into JSON payloads of "data:" lines; calls onData(obj) per event.
async function readEvents(body, onData) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      onData(JSON.parse(data));
    }
  }
}

function requestBody() {
  const messages = [];
  const system = $("system-prompt").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.history);
  const body = { messages, stream: true };
  if ($("model").value) body.model = $("model").value;
  const maxTokens = parseInt($("max-tokens").value, 10);
  if (maxTokens > 0) body.max_tokens = maxTokens;
  const temperature = parseFloat($("temperature").value);
  if (!Number.isNaN(temperature)) body.temperature = temperature;
  return body;
}

async function send(text, { resend = false } = {}) {
  if (state.controller) return;
  state.lastUserText = text;
  if (!resend) {
    addBubble("user", text);
    state.history.push({ role: "user", content: text });
  }
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  let bubble = null;
  let reply = "";
  try {
    const response = await fetch("v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody()),
      signal: controller.signal,
    });
    if (!response.ok) {
      await handleRefusal(response);
      return;
    }
    bubble = addBubble("assistant", "");
    bubble.classList.add("streaming");
    let finish = null;
    await readEvents(response.body, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
      const choice = (chunk.choices || [])[0];
      if (!choice) return;
      const piece = (choice.delta && choice.delta.content) || "";
      if (piece) {
        reply += piece;
        bubble.textContent = reply;
        scrollToEnd();
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    });
    if (finish === "length") addNote(bubble, "(stopped at the max tokens limit)");
    setStatus("ready");
  } catch (err) {
    if (err.name === "AbortError") {
      if (bubble) addNote(bubble, "(stopped)");
    } else {
      showError("Connection problem: " + err.message, { retry: true });
    }
  } finally {
    if (bubble) {
      bubble.classList.remove("streaming");
      if (!reply && !bubble.querySelector(".note")) addNote(bubble, "(empty reply)");
    }
    // A partial reply stays in the conversation, as the user saw it.
    if (reply) state.history.push({ role: "assistant", content: reply });
    state.controller = null;
    setBusy(false);
    $("prompt").focus();
  }
}

async function loadModels() {
  try {
    const response = await fetch("v1/models", { headers: headers() });
    if (response.status === 401) {
      setStatus("API key needed", true);
      $("key-form").hidden = false;
      return;
    }
    if (!response.ok) throw new Error(await errorMessage(response));
    const body = await response.json();
    const select = $("model");
    select.replaceChildren();
    for (const model of body.data || []) {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.id;
      select.appendChild(option);
    }
    const ready = await fetch("ready").then((r) => r.ok).catch(() => false);
    setStatus(ready ? "ready" : "model loading…", !ready);
  } catch (err) {
    setStatus("server unreachable: " + err.message, true);
  }
}

function autoGrow() {
  const box = $("prompt");
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight, window.innerHeight * 0.4) + "px";
}

function init() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text) return;
    $("prompt").value = "";
    autoGrow();
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("prompt").addEventListener("input", autoGrow);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("new-chat").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.history = [];
    for (const el of document.querySelectorAll(".msg")) el.remove();
    $("empty").hidden = false;
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("api-key").value = "";
    for (const el of document.querySelectorAll('.msg.error[data-kind="auth"]')) el.remove();
    $("key-form").hidden = true;
    loadModels();
    if (state.lastUserText !== null) send(state.lastUserText, { resend: true });
  });
  $("forget-key").addEventListener("click", () => sessionStorage.removeItem(KEY_STORAGE));
  loadModels();
  $("prompt").focus();
}

document.addEventListener("DOMContentLoaded", init);
