// Inference output cards: one per send, newest first, kept in localStorage so
// they survive a reload. A card is Pending (spinner, elapsed time, Cancel),
// Complete or Failed (with a Failure Reason disclosure), or Cancelled.
import { el, formatMs, liveTime } from "./format.js";
import { renderBody } from "./body-view.js";
import { snippets } from "./snippets.js";

const MAX_CARDS = 20;
// A stored card keeps at most this much of its preview, so localStorage stays small.
const MAX_STORED_PREVIEW = 64 * 1024;

export function storageKey(endpoint, what) {
  return `sageport.${what}.${endpoint}`;
}

export function loadCards(endpoint) {
  try {
    return JSON.parse(window.localStorage.getItem(storageKey(endpoint, "cards")) || "[]");
  } catch {
    return [];
  }
}

export function saveCards(endpoint, cards) {
  const stored = cards.slice(0, MAX_CARDS).map((card) => {
    const copy = structuredClone(card);
    const body = copy.result?.body;
    if (body?.text !== undefined && body.text.length > MAX_STORED_PREVIEW) {
      body.text = body.text.slice(0, MAX_STORED_PREVIEW);
      body.truncated = true;
    }
    if (copy.status === "Pending") copy.status = "Cancelled";
    return copy;
  });
  try {
    window.localStorage.setItem(storageKey(endpoint, "cards"), JSON.stringify(stored));
  } catch {
    // Storage full or disabled: the cards still show until the page reloads.
  }
}

export function renderCard(card, actions) {
  const request = card.request;
  const kind = request.kind === "file" ? `file ${request.fileName || ""}` : request.kind.toUpperCase();
  const title = `${kind} request (${request.contentType})${request.variant ? ` to ${request.variant}` : ""}${request.customUrl ? ` to ${request.customUrl}` : ""}`;
  const article = el("article", { class: `card card-${card.status.toLowerCase()}`, "aria-label": `Inference output: ${title}`, "data-status": card.status, "data-card-id": card.id });
  article.append(el("h3", { class: "card-title", text: title }));

  const fields = el("dl", { class: "card-fields" });
  fields.append(el("dt", { text: "Status" }), el("dd", { class: "card-status" }, statusView(card, actions)));
  if (card.status !== "Pending") {
    const result = card.result || {};
    const execution = result.execution_ms !== undefined && result.execution_ms !== null
      ? el("span", { class: "execution-length", title: result.model_ms !== null && result.model_ms !== undefined ? `Model ${formatMs(result.model_ms)} · overhead ${formatMs(result.overhead_ms)}` : "Measured by the server around the invocation", text: formatMs(result.execution_ms) })
      : el("span", { class: "muted", text: "—" });
    fields.append(el("dt", { text: "Execution Length" }), el("dd", {}, execution));
  }
  fields.append(el("dt", { text: "Request Time" }), el("dd", {}, liveTime(card.sentAt)));
  if (card.status !== "Pending") {
    fields.append(el("dt", { text: "Result Time" }), el("dd", {}, card.completedAt ? liveTime(card.completedAt) : "—"));
  }
  article.append(fields);

  if (card.status === "Failed") article.append(failureReason(card, actions));
  if (card.status === "Complete" && card.result) {
    article.append(el("h4", { text: `Response${card.result.variant ? ` from ${card.result.variant}` : ""} (${card.result.content_type})` }));
    if (card.result.custom_attributes) {
      article.append(el("p", {}, "Custom attributes: ", el("code", { text: card.result.custom_attributes })));
    }
    article.append(renderBody(card.result.body, card.result.content_type));
  }
  article.append(cardActions(card, actions));
  return article;
}

function statusView(card, actions) {
  if (card.status === "Pending") {
    const elapsed = el("span", { class: "elapsed", "data-started": String(card.sentAt), text: "0.0 s" });
    return el("span", { class: "status status-busy" },
      el("span", { class: "spinner", role: "img", "aria-label": "Request in progress" }),
      el("span", { class: "status-text", text: "Pending" }), " ", elapsed, " ",
      el("button", { type: "button", class: "cancel", text: "Cancel request", onclick: () => actions.cancel(card) }));
  }
  const icons = { Complete: ["✓", "ok"], Failed: ["✕", "bad"], Cancelled: ["⊘", "idle"] };
  const [icon, tone] = icons[card.status];
  return el("span", { class: `status status-${tone}` },
    el("span", { class: "status-icon", "aria-hidden": "true", text: icon }),
    el("span", { class: "status-text", text: card.status }));
}

function failureReason(card, actions) {
  const error = card.result?.error || { code: "Error", message: "The request failed." };
  const facts = [["Error code", error.code]];
  if (error.error_code) facts.push(["Reason", error.error_code]);
  if (error.original_status !== undefined && error.original_status !== null) facts.push(["Original status code", String(error.original_status)]);
  const details = el("details", { class: "failure", open: true },
    el("summary", { text: "Failure Reason" }),
    el("dl", {}, facts.map(([label, value]) => [el("dt", { text: label }), el("dd", { text: value })])),
    // A ModelError's message quotes the original message whole, so show the quote only once.
    el("p", { class: "failure-message", text: error.original_message ? `The model returned an error (status ${error.original_status}).` : error.message }));
  if (error.original_message) {
    details.append(el("p", { text: "Original message:" }), el("pre", { class: "original-message", tabindex: "0", text: error.original_message }));
  }
  // The endpoint's logs can explain only a request that reached the endpoint.
  if (!card.result?.rejected && !card.request.customUrl) {
    details.append(el("p", {}, el("a", { href: "?tab=logs", onclick: (event) => { event.preventDefault(); actions.showLogs(); }, text: "See the endpoint's logs" })));
  }
  return details;
}

function cardActions(card, actions) {
  const output = el("pre", { class: "snippet", hidden: true, tabindex: "0", "aria-label": "Copied snippet" });
  const copy = (label) => el("button", {
    type: "button",
    text: `Copy as ${label}`,
    onclick: async () => {
      const text = snippets(card.request, window.location.origin)[label];
      output.textContent = text;
      output.hidden = false;
      output.dataset.format = label;
      try {
        await navigator.clipboard.writeText(text);
        actions.announce(`Copied the request as ${label}.`);
      } catch {
        actions.announce(`Showing the request as ${label}; select it to copy.`);
      }
    },
  });
  return el("div", { class: "card-actions" },
    el("div", { class: "toolbar" },
      el("button", { type: "button", text: "Edit & re-run", onclick: () => actions.edit(card) }),
      copy("AWS CLI"), copy("boto3"), copy("curl")),
    output);
}

// Refresh every Pending card's elapsed time.
export function tickElapsed(root) {
  for (const node of root.querySelectorAll(".elapsed[data-started]")) {
    node.textContent = `${(Date.now() / 1000 - Number(node.dataset.started)).toFixed(1)} s`;
  }
}
