// llm-uk8s web chat: an answer's markdown to DOM nodes, safely, and the copy buttons.
// marked turns markdown into HTML with raw HTML escaped back to text and images turned into links;
// DOMPurify then keeps only an allowlist of tags and attributes (no scripts, no event handlers, no
// styles, links only to http(s)/mailto) and returns DOM nodes, never a string for innerHTML.
// Both are vendored and pinned: vendor/README.md. Loaded before chat.js, which calls
// renderMarkdown() and copyText().
"use strict";

const PURIFY_CONFIG = {
  ALLOWED_TAGS: ["p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr",
    "th", "td"],
  ALLOWED_ATTR: ["href", "title", "start", "align", "class"],  // class: see the hook below
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

const markdownReady = typeof window.marked === "object" && typeof window.DOMPurify === "function"
  && window.DOMPurify.isSupported;

if (markdownReady) {
  window.marked.use({
    gfm: true,
    breaks: true,  // models write single newlines as line breaks
    renderer: {
      // Raw HTML from the model is shown as the text it is, never parsed as markup.
      html(token) {
        const text = escapeHtml(token.text);
        return token.block ? "<p>" + text + "</p>" : text;
      },
      // No remote images (tracking pixels, CSP noise): an image becomes a plain link.
      image(token) {
        return '<a href="' + escapeHtml(token.href) + '">' + escapeHtml(token.text || token.href)
          + "</a>";
      },
      checkbox(token) {
        return token.checked ? "☑ " : "☐ ";
      },
    },
  });
  // The one class kept is marked's language-<name> on a fenced block's <code>.
  window.DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
    if (data.attrName === "class" && !(node.tagName === "CODE"
      && /^language-[\w+#.-]{1,30}$/.test(data.attrValue))) {
      data.keepAttr = false;
    }
  });
  window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
}

function renderMarkdown(container, source) {
  let fragment = null;
  if (markdownReady) {
    try {
      fragment = window.DOMPurify.sanitize(window.marked.parse(source, { async: false }),
        PURIFY_CONFIG);
    } catch (_) { fragment = null; }
  }
  if (!fragment) {  // the libraries failed to load or to parse: plain text, still safe
    fragment = document.createDocumentFragment();
    const p = document.createElement("p");
    p.className = "plain";
    p.textContent = source;
    fragment.appendChild(p);
  }
  for (const pre of fragment.querySelectorAll("pre")) wrapCodeBlock(pre);
  container.replaceChildren(fragment);  // one DOM change per render
}

// A code block gets a head row with its language and a copy button, outside the scrolling <pre>.
// Both labels come from CSS (attr()/content), so the answer's text holds only the answer.
function wrapCodeBlock(pre) {
  const code = pre.querySelector("code");
  const match = code && /^language-(.+)$/.exec(code.getAttribute("class") || "");
  const block = document.createElement("div");
  block.className = "code-block";
  const head = document.createElement("div");
  head.className = "code-head";
  const lang = document.createElement("span");
  lang.className = "lang";
  if (match) lang.dataset.lang = match[1];
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy-code";
  button.setAttribute("aria-label", "Copy code");
  button.title = "Copy code";
  button.addEventListener("click", () => copyText((code || pre).textContent, button));
  head.append(lang, button);
  pre.replaceWith(block);
  block.append(head, pre);
}

async function copyText(text, button) {
  let ok = false;
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_) { ok = false; }
  }
  if (!ok) {  // plain http behind a proxy has no Clipboard API: the old way
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
    area.remove();
  }
  button.dataset.copied = ok ? "yes" : "no";
  setTimeout(() => { delete button.dataset.copied; }, 1500);
}
