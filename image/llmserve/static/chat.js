// llm-uk8s web chat. Streams /v1/chat/completions over SSE with fetch().
// Safety: user text, error bodies and status lines are set with textContent; the one exception is
// an answer's markdown, which markdown.js renders through marked and DOMPurify (strict allowlist)
// into DOM nodes. The page's CSP forbids inline scripts as a second wall.
// URLs are relative so the page also works behind a path prefix (an ingress at /chat/, say).
"use strict";

const KEY_STORAGE = "llmserve.apiKey";                   // sessionStorage: gone with the tab
const CONVERSATIONS_STORAGE = "llmserve.conversations";  // localStorage: survives reloads
const CURRENT_STORAGE = "llmserve.currentConversation";
const SETTINGS_STORAGE = "llmserve.settings";
const POLL_NOT_READY_MS = 1000;   // while the model loads: notice "ready" within a second
const POLL_READY_MS = 15000;      // once ready: notice a restart or an outage
const POLL_UNREACHABLE_MAX_MS = 10000;
const MAX_STOP_SEQUENCES = 4;     // what the server accepts (llmserve/protocol.py)
const $ = (id) => document.getElementById(id);

const state = {
  conversations: [],  // saved ones, newest first: [{id, title, updated, messages}]
  current: null,      // the conversation on screen (not saved until it has a message)
  controller: null,   // AbortController of the reply being streamed
  server: { kind: "unknown", detail: "" },  // what /ready said last
  keyNeeded: false,   // /v1/models or a request answered 401
  pollTimer: null,
  polling: false,
  unreachableDelay: POLL_NOT_READY_MS,
  modelsLoaded: false,
};

// ---------------------------------------------------------------- storage

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey()) h.Authorization = "Bearer " + apiKey();
  return h;
}

function readConversations() {
  try {
    const list = JSON.parse(localStorage.getItem(CONVERSATIONS_STORAGE) || "[]");
    if (!Array.isArray(list)) return [];
    return list.filter((c) => c && typeof c.id === "string" && Array.isArray(c.messages)
      && c.messages.every((m) => m && (m.role === "user" || m.role === "assistant")
        && typeof m.content === "string"));
  } catch (_) {
    return [];
  }
}

function writeConversations(list) {
  try {
    localStorage.setItem(CONVERSATIONS_STORAGE, JSON.stringify(list));
    return true;
  } catch (err) {
    showError("This conversation could not be saved in the browser (" + err.name
      + "): delete old conversations to make room.");
    return false;
  }
}

// Read, change, write: another tab may have saved its own conversations meanwhile.
function saveConversation(conv) {
  if (!conv.messages.length || conv.deleted) return;
  conv.updated = Date.now();
  const list = readConversations().filter((c) => c.id !== conv.id);
  list.unshift(conv);
  writeConversations(list);
  state.conversations = list;
  if (conv === state.current) localStorage.setItem(CURRENT_STORAGE, conv.id);
  renderConversationList();
}

function deleteConversation(id) {
  const list = readConversations().filter((c) => c.id !== id);
  writeConversations(list);
  state.conversations = list;
  if (state.current && state.current.id === id) {
    state.current.deleted = true;  // a reply still streaming into it must not save it again
    stopStreaming();
    openConversation(list[0] || newConversation());
  }
  renderConversationList();
}

function newConversation() {
  const id = (crypto.randomUUID ? crypto.randomUUID()
    : Date.now().toString(36) + Math.random().toString(36).slice(2));
  return { id, title: "", updated: Date.now(), messages: [] };
}

function titleOf(conv) {
  const first = conv.messages.find((m) => m.role === "user");
  const text = String(conv.title || (first && first.content) || "New chat")
    .replace(/\s+/g, " ").trim();
  return text.length > 60 ? text.slice(0, 57) + "…" : text;
}

function loadSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) || "{}") || {};
  } catch (_) { /* unreadable settings: the defaults */ }
  for (const id of SETTING_FIELDS) {
    if (typeof saved[id] === "string") $(id).value = saved[id];
  }
}

const SETTING_FIELDS = ["max-tokens", "temperature", "top-p", "seed", "stop-seqs", "system-prompt"];

function saveSettings() {
  const values = {};
  for (const id of SETTING_FIELDS) values[id] = $(id).value;
  values.model = $("model").value;
  try { localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(values)); } catch (_) { /* */ }
}

// ---------------------------------------------------------------- status and readiness

function showStatus() {
  const { kind, detail } = state.server;
  let text;
  let bad = true;
  if (kind === "ready") {
    text = state.keyNeeded ? "ready · API key needed" : "ready";
    bad = state.keyNeeded;
  } else if (kind === "loading") {
    text = "model loading…";
    bad = false;
  } else if (kind === "unreachable") {
    text = "server unreachable, retrying…" + (detail ? " (" + detail + ")" : "");
  } else if (kind === "unknown") {
    text = "connecting…";
    bad = false;
  } else {
    text = detail;
  }
  const el = $("status");
  el.textContent = text;
  el.dataset.state = kind;
  el.classList.toggle("bad", bad);
}

// What a /ready answer means: network error (no answer), 503 with {"status": ...}, or 200.
async function readServer() {
  let response;
  try {
    response = await fetch("ready", { cache: "no-store" });
  } catch (err) {
    return { kind: "unreachable", detail: err.message };
  }
  if (response.ok) return { kind: "ready", detail: "" };
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  const status = body && typeof body.status === "string" ? body.status : "";
  const message = body && body.error && body.error.message ? String(body.error.message) : "";
  if (response.status === 503 && status === "loading") return { kind: "loading", detail: "" };
  if (response.status === 503 && status === "draining") {
    return { kind: "draining", detail: "server shutting down" };
  }
  if (response.status === 503 && status === "failed") {
    return { kind: "failed", detail: "the model failed to load" + (message ? ": " + message : "") };
  }
  if (response.status === 503 && status === "engine_stopped") {
    return { kind: "engine_stopped", detail: "the generation engine has stopped" };
  }
  return { kind: "error", detail: "server answered HTTP " + response.status
    + (status ? " (" + status + ")" : "") };
}

// One chain of polls: a poll asked for while one is in flight is that one.
async function pollReady() {
  if (state.polling) return;
  state.polling = true;
  clearTimeout(state.pollTimer);
  let server;
  try {
    server = await readServer();
    state.server = server;
    showStatus();
    if (server.kind === "ready" && !state.modelsLoaded) await loadModels();
    if (server.kind !== "ready") state.modelsLoaded = false;
  } finally {
    state.polling = false;
  }
  let delay = server.kind === "ready" ? POLL_READY_MS : POLL_NOT_READY_MS;
  if (server.kind === "unreachable") {
    delay = state.unreachableDelay;
    state.unreachableDelay = Math.min(state.unreachableDelay * 2, POLL_UNREACHABLE_MAX_MS);
  } else {
    state.unreachableDelay = POLL_NOT_READY_MS;
  }
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(pollReady, delay);
}

function pollSoon() {
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(pollReady, POLL_NOT_READY_MS);
}

async function loadModels() {
  try {
    const response = await fetch("v1/models", { headers: headers() });
    if (response.status === 401) {
      state.keyNeeded = true;
      showStatus();
      $("key-form").hidden = false;
      return;
    }
    if (!response.ok) return;  // /ready polling says why
    const body = await response.json();
    const select = $("model");
    const wanted = select.value || savedModel();
    select.replaceChildren();
    for (const model of body.data || []) {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.id;
      select.appendChild(option);
    }
    if (wanted && [...select.options].some((o) => o.value === wanted)) select.value = wanted;
    state.keyNeeded = false;
    state.modelsLoaded = true;
    showStatus();
  } catch (_) { /* network error: the next /ready poll reports it */ }
}

function savedModel() {
  try {
    return (JSON.parse(localStorage.getItem(SETTINGS_STORAGE) || "{}") || {}).model || "";
  } catch (_) {
    return "";
  }
}

function updateForgetKey() {
  $("forget-key").hidden = !apiKey();
}

// ---------------------------------------------------------------- the conversation on screen

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function actionButton(label, title, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "act";
  button.textContent = label;
  button.title = title;
  button.addEventListener("click", onClick);
  return button;
}

function statsText(stats) {
  if (!stats || !Number.isInteger(stats.tokens) || stats.tokens < 1) return "";
  const parts = [(stats.estimated ? "≈" : "") + stats.tokens + " tokens"];
  if (Number.isFinite(stats.tps)) parts.push(stats.tps.toFixed(1) + " tok/s");
  if (Number.isFinite(stats.ttft)) parts.push("first token " + stats.ttft.toFixed(2) + " s");
  return parts.join(" · ");
}

// One message as a "turn": its bubble and a row of actions under it.
function addTurn(message) {
  $("empty").hidden = true;
  const turn = document.createElement("div");
  turn.className = "turn " + message.role;
  const bubble = document.createElement("div");
  bubble.className = "msg " + message.role;
  bubble.dataset.role = message.role;
  turn.appendChild(bubble);
  const actions = document.createElement("div");
  actions.className = "actions";
  turn.appendChild(actions);
  const view = { turn, bubble, actions, message, md: null, speed: null, regenerate: null };
  if (message.role === "assistant") {
    view.md = document.createElement("div");
    view.md.className = "md";
    bubble.appendChild(view.md);
    if (message.content) renderMarkdown(view.md, message.content);
    if (message.note) addNote(bubble, message.note);
    view.speed = document.createElement("span");
    view.speed.className = "speed";
    view.speed.textContent = statsText(message.stats);
    actions.appendChild(view.speed);
    actions.appendChild(actionButton("Copy", "Copy this answer (markdown)",
      (e) => copyText(view.message.content, e.currentTarget)));
    view.regenerate = actionButton("Regenerate", "Ask again for this answer", regenerate);
    view.regenerate.classList.add("regenerate");
    actions.appendChild(view.regenerate);
  } else {
    bubble.textContent = message.content;
    actions.appendChild(actionButton("Copy", "Copy this message",
      (e) => copyText(message.content, e.currentTarget)));
  }
  $("messages").appendChild(turn);
  scrollToEnd();
  return view;
}

function addNote(bubble, text) {
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = text;
  bubble.appendChild(note);
}

// Only the last answer can be regenerated (earlier ones have later turns built on them).
function updateRegenerate() {
  const buttons = [...document.querySelectorAll("#messages .turn.assistant .regenerate")];
  const lastTurn = [...document.querySelectorAll("#messages .turn")].pop();
  for (const b of buttons) {
    b.hidden = state.controller !== null || b.closest(".turn") !== lastTurn;
  }
}

function clearMessages() {
  for (const el of document.querySelectorAll("#messages .turn, #messages .msg")) el.remove();
  $("empty").hidden = false;
}

function openConversation(conv) {
  state.current = conv;
  clearMessages();
  for (const message of conv.messages) addTurn(message);
  updateRegenerate();
  if (conv.messages.length) localStorage.setItem(CURRENT_STORAGE, conv.id);
  renderConversationList();
}

function renderConversationList() {
  const list = $("conversations");
  list.replaceChildren();
  for (const conv of state.conversations) {
    const item = document.createElement("li");
    item.className = "conversation";
    item.dataset.id = conv.id;
    const current = state.current && state.current.id === conv.id;
    item.classList.toggle("current", Boolean(current));
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = titleOf(conv);
    open.title = titleOf(conv);
    if (current) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => {
      if (!(state.current && state.current.id === conv.id)) {
        stopStreaming();
        const fresh = readConversations().find((c) => c.id === conv.id) || conv;
        openConversation(fresh);
      }
      setDrawer(false);
    });
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.textContent = "×";
    del.title = "Delete this conversation";
    del.setAttribute("aria-label", "Delete conversation: " + titleOf(conv));
    del.addEventListener("click", () => deleteConversation(conv.id));
    item.append(open, del);
    list.appendChild(item);
  }
  $("no-conversations").hidden = state.conversations.length > 0;
}

function setDrawer(open) {
  document.body.classList.toggle("drawer-open", open);
  $("toggle-chats").setAttribute("aria-expanded", String(open));
}

function showError(message, { retry = null } = {}) {
  $("empty").hidden = true;
  const div = document.createElement("div");
  div.className = "msg error";
  div.dataset.role = "error";
  div.textContent = message;
  if (retry) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Retry";
    button.addEventListener("click", () => {
      div.remove();
      retry();
    });
    div.appendChild(document.createElement("br"));
    div.appendChild(button);
  }
  $("messages").appendChild(div);
  scrollToEnd();
  return div;
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("prompt").disabled = busy;
  updateRegenerate();
}

function stopStreaming() {
  if (state.controller) state.controller.abort();
}

// ---------------------------------------------------------------- requests

async function errorMessage(response) {
  // OpenAI-style body: {"error": {"message": ...}}; fall back to the status line.
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return String(body.error.message);
  } catch (_) { /* not JSON */ }
  return "HTTP " + response.status + " " + response.statusText;
}

async function handleRefusal(response, conv) {
  const message = await errorMessage(response);
  const retry = () => generate(conv);
  if (response.status === 401) {
    state.keyNeeded = true;
    showStatus();
    showError("The server needs a valid API key: " + message).dataset.kind = "auth";
    $("key-form").hidden = false;
    $("api-key").focus();
  } else if (response.status === 429) {
    const after = response.headers.get("Retry-After");
    showError("The server is busy" + (after ? ", retry in " + after + " s" : "") + ": " + message,
      { retry });
  } else if (response.status === 503) {
    showError("The model is not ready yet: " + message, { retry });
    pollSoon();
  } else {
    showError("Request refused (" + response.status + "): " + message, { retry });
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

// The sampling settings, checked here so a typo gets a message naming the field.
function sampling() {
  const options = {};
  if ($("model").value) options.model = $("model").value;
  const maxTokens = $("max-tokens").value.trim();
  if (maxTokens) {
    const n = Number(maxTokens);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error("Max tokens must be a whole number of at least 1, not '" + maxTokens + "'.");
    }
    options.max_tokens = n;
  }
  const temperature = $("temperature").value.trim();
  if (temperature) {
    const t = Number(temperature);
    if (!(t >= 0 && t <= 2)) {
      throw new Error("Temperature must be between 0 and 2, not '" + temperature + "'.");
    }
    options.temperature = t;
  }
  const topP = $("top-p").value.trim();
  if (topP) {
    const p = Number(topP);
    if (!(p > 0 && p <= 1)) {
      throw new Error("Top p must be above 0 and at most 1, not '" + topP + "'.");
    }
    options.top_p = p;
  }
  const seed = $("seed").value.trim();
  if (seed) {
    const s = Number(seed);
    if (!/^-?\d+$/.test(seed) || !Number.isSafeInteger(s)) {
      throw new Error("Seed must be a whole number between " + Number.MIN_SAFE_INTEGER + " and "
        + Number.MAX_SAFE_INTEGER + " (or empty for random), not '" + seed + "'.");
    }
    options.seed = s;
  }
  // One stop sequence per line; "\n" and "\t" written out stand for a newline and a tab.
  const stops = $("stop-seqs").value.split("\n").filter((line) => line !== "")
    .map((line) => line.replace(/\\n/g, "\n").replace(/\\t/g, "\t"));
  if (stops.length > MAX_STOP_SEQUENCES) {
    throw new Error("Stop takes at most " + MAX_STOP_SEQUENCES + " sequences (one per line), not "
      + stops.length + ".");
  }
  if (stops.length) options.stop = stops;
  return options;
}

function requestBody(conv, options) {
  const messages = [];
  const system = $("system-prompt").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const m of conv.messages) messages.push({ role: m.role, content: m.content });
  return { messages, stream: true, stream_options: { include_usage: true }, ...options };
}

function send(text) {
  if (state.controller) return;
  let options;
  try { options = sampling(); } catch (err) {
    showError(err.message);
    return false;
  }
  const conv = state.current;
  const message = { role: "user", content: text };
  conv.messages.push(message);
  addTurn(message);
  saveConversation(conv);
  generate(conv, options);
  return true;
}

function regenerate() {
  const conv = state.current;
  if (state.controller || !conv.messages.length) return;
  if (conv.messages[conv.messages.length - 1].role !== "assistant") return;
  let options;
  try { options = sampling(); } catch (err) {
    showError(err.message);
    return;
  }
  conv.messages.pop();
  saveConversation(conv);
  openConversation(conv);
  generate(conv, options);
}

async function generate(conv, options) {
  if (state.controller) return;
  if (!options) {
    try { options = sampling(); } catch (err) {
      showError(err.message);
      return;
    }
  }
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  let view = null;
  let reply = "";
  let note = "";
  let usage = null;
  let chunks = 0;
  const started = performance.now();
  let firstAt = null;
  let lastAt = null;
  try {
    const response = await fetch("v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody(conv, options)),
      signal: controller.signal,
    });
    if (!response.ok) {
      await handleRefusal(response, conv);
      return;
    }
    if (state.server.kind !== "ready") {  // an answer proves it: no need to wait for the poll
      state.server = { kind: "ready", detail: "" };
      showStatus();
    }
    view = addTurn({ role: "assistant", content: "" });
    view.bubble.classList.add("streaming");
    view.actions.hidden = true;  // copy and regenerate once the answer is complete
    let finish = null;
    await readEvents(response.body, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
      if (chunk.usage) usage = chunk.usage;
      const choice = (chunk.choices || [])[0];
      if (!choice) return;
      const piece = (choice.delta && choice.delta.content) || "";
      if (piece) {
        const now = performance.now();
        if (firstAt === null) firstAt = now;
        lastAt = now;
        chunks += 1;
        reply += piece;
        renderMarkdown(view.md, reply);
        scrollToEnd();
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    });
    if (finish === "length") note = "(stopped at the max tokens limit)";
  } catch (err) {
    if (err.name === "AbortError") {
      if (view) note = "(stopped)";
    } else {
      showError("Connection problem: " + err.message, { retry: () => generate(conv) });
      if (err instanceof TypeError) pollSoon();  // fetch's network error: is the server gone?
    }
  } finally {
    state.controller = null;
    if (view) {
      view.bubble.classList.remove("streaming");
      if (!reply && !note) note = "(empty reply)";
      if (note) addNote(view.bubble, note);
      const stats = replyStats(usage, chunks, started, firstAt, lastAt);
      view.speed.textContent = statsText(stats);
      // A partial reply stays in the conversation, as the user saw it.
      if (reply) {
        view.message = { role: "assistant", content: reply, stats };
        if (note) view.message.note = note;
        conv.messages.push(view.message);
        saveConversation(conv);
        view.actions.hidden = false;
      }
    }
    setBusy(false);
    if (state.current === conv) $("prompt").focus();
  }
}

// Tokens from the stream's usage chunk (asked for with stream_options.include_usage), else the
// number of content chunks as an estimate; speed counts from the first token to the last.
function replyStats(usage, chunks, started, firstAt, lastAt) {
  const counted = usage && Number.isInteger(usage.completion_tokens);
  const tokens = counted ? usage.completion_tokens : chunks;
  if (!tokens) return null;
  const stats = { tokens, estimated: !counted };
  if (firstAt !== null) stats.ttft = (firstAt - started) / 1000;
  if (tokens > 1 && lastAt > firstAt) stats.tps = (tokens - 1) / ((lastAt - firstAt) / 1000);
  return stats;
}

// ---------------------------------------------------------------- wiring

function autoGrow() {
  const box = $("prompt");
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight, window.innerHeight * 0.4) + "px";
}

function init() {
  loadSettings();
  updateForgetKey();
  state.conversations = readConversations();
  const currentId = localStorage.getItem(CURRENT_STORAGE);
  openConversation(state.conversations.find((c) => c.id === currentId)
    || state.conversations[0] || newConversation());

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text) return;
    if (send(text)) {
      $("prompt").value = "";
      autoGrow();
    }
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("prompt").addEventListener("input", autoGrow);
  $("stop").addEventListener("click", stopStreaming);
  $("new-chat").addEventListener("click", () => {
    stopStreaming();
    if (state.current.messages.length) openConversation(newConversation());
    else clearMessages();
    setDrawer(false);
    $("prompt").focus();
  });
  $("toggle-chats").addEventListener("click",
    () => setDrawer(!document.body.classList.contains("drawer-open")));
  document.addEventListener("click", (event) => {  // a tap beside the drawer closes it
    if (!document.body.classList.contains("drawer-open")) return;
    if (!event.target.closest("#sidebar, #toggle-chats")) setDrawer(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") setDrawer(false);
  });
  for (const id of [...SETTING_FIELDS, "model"]) $(id).addEventListener("change", saveSettings);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("api-key").value = "";
    for (const el of document.querySelectorAll('.msg.error[data-kind="auth"]')) el.remove();
    $("key-form").hidden = true;
    state.keyNeeded = false;
    updateForgetKey();
    showStatus();
    loadModels();
    const last = state.current.messages[state.current.messages.length - 1];
    if (last && last.role === "user") generate(state.current);
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    updateForgetKey();
  });
  // Another tab saved or deleted a conversation: show the same list.
  window.addEventListener("storage", (event) => {
    if (event.key !== CONVERSATIONS_STORAGE) return;
    state.conversations = readConversations();
    renderConversationList();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollReady();
  });
  pollReady();
  $("prompt").focus();
}

document.addEventListener("DOMContentLoaded", init);
