// The Test inference tab: the request form (editor, body type, headers,
// variant, custom URL), sending through the console API, and the card stack.
import { createEditor } from "../vendor/editor.js";
import { announce, csrfHeaders, el, fetchJson, goToSignIn, refreshTimes } from "./format.js";
import { loadCards, renderCard, saveCards, storageKey, tickElapsed } from "./cards.js";
import { jsonProblem } from "./json-check.js";

const BODY_KINDS = {
  json: { label: "JSON", contentType: "application/json", example: "[[5.1, 3.5, 1.4, 0.2]]" },
  csv: { label: "CSV", contentType: "text/csv", example: "5.1,3.5,1.4,0.2" },
  text: { label: "Plain text", contentType: "text/plain", example: "" },
  file: { label: "File (raw bytes)", contentType: "application/octet-stream", example: "" },
};
// Suggested response types: those the built-in runtime encodes, and common others.
const ACCEPT_TYPES = ["application/json", "text/csv", "application/x-npy", "application/jsonlines", "text/plain", "*/*"];

export function renderTestInference(panel, detail, showLogs) {
  const endpoint = detail.endpoint.EndpointName;
  const saved = JSON.parse(window.localStorage.getItem(storageKey(endpoint, "request")) || "null");
  const state = { kind: saved?.kind || "json", file: null, cards: loadCards(endpoint), controllers: new Map() };

  const kind = el("select", { id: "body-kind", "aria-label": "Body type" },
    Object.entries(BODY_KINDS).map(([value, { label }]) => el("option", { value, text: label })));
  kind.value = state.kind;
  const contentType = el("input", { id: "content-type", type: "text", value: saved?.contentType || BODY_KINDS[state.kind].contentType });
  // The body type never changes Accept. As with SageMaker Studio's response content
  // type, Accept is the user's own choice, because a model may take CSV and return JSON.
  const accept = el("input", {
    id: "accept", type: "text", list: "accept-types", "aria-describedby": "accept-hint",
    value: saved?.accept ?? "application/json", placeholder: "any",
  });
  const acceptTypes = el("datalist", { id: "accept-types" }, ACCEPT_TYPES.map((value) => el("option", { value })));
  const editorHost = el("div", { class: "editor-host" });
  const fileInput = el("input", { type: "file", id: "request-file", "aria-label": "Request file", hidden: true });
  const bodyStatus = el("p", { id: "body-status", class: "body-status" });
  const format = el("button", { type: "button", text: "Format JSON" });
  const variant = el("select", { id: "target-variant" },
    el("option", { value: "", text: "By weight (no TargetVariant)" }),
    detail.variants.map((item) => el("option", { value: item.VariantName, text: item.VariantName })));
  variant.value = saved?.variant || "";
  const customUrl = el("input", { id: "custom-url", type: "url", value: saved?.customUrl || "", placeholder: "http://127.0.0.1:9000/invocations" });
  const headerRows = el("div", { class: "header-rows" });
  const send = el("button", { type: "submit", class: "primary", id: "send-request", "aria-describedby": "send-reason", text: "Send Request" });
  const sendReason = el("span", { id: "send-reason", class: "muted" });
  const stack = el("div", { class: "card-stack", id: "cards" });

  const editor = createEditor(editorHost, {
    doc: saved?.text ?? BODY_KINDS[state.kind].example,
    label: "Request body",
    nonce: document.querySelector('meta[name="csp-nonce"]')?.content,
    onChange: () => validate(),
    onSubmit: () => submit(),
  });

  function addHeaderRow(name = "", value = "") {
    const index = headerRows.children.length + 1;
    const row = el("div", { class: "header-row" },
      el("input", { type: "text", class: "header-name", "aria-label": `Header ${index} name`, placeholder: "X-Amzn-SageMaker-Custom-Attributes", value: name }),
      el("input", { type: "text", class: "header-value", "aria-label": `Header ${index} value`, value }),
      el("button", { type: "button", text: "Remove", "aria-label": `Remove header ${index}`, onclick: () => row.remove() }));
    headerRows.append(row);
  }
  for (const [name, value] of saved?.headers || []) addHeaderRow(name, value);

  const form = el("form", { class: "test-form", "aria-label": "Test inference request", onsubmit: (event) => { event.preventDefault(); submit(); } },
    el("div", { class: "field-row" },
      el("label", { for: "body-kind", text: "Body type" }), kind,
      el("label", { for: "content-type", text: "Content-Type" }), contentType,
      el("label", { for: "accept", text: "Accept" }), accept, acceptTypes,
      el("span", { id: "accept-hint", class: "muted", text: "The response type. Body type sets only Content-Type." })),
    el("div", { class: "editor-toolbar" }, el("span", { id: "editor-label", text: "Request body" }), format),
    editorHost, fileInput, bodyStatus,
    detail.variants.length > 1 ? el("div", { class: "field-row" }, el("label", { for: "target-variant", text: "Target variant" }), variant) : null,
    el("details", { class: "advanced", open: Boolean(saved?.customUrl || saved?.headers?.length) },
      el("summary", { text: "Custom URL and headers" }),
      el("div", { class: "field-row" }, el("label", { for: "custom-url", text: "Custom URL (optional)" }), customUrl),
      el("p", { class: "muted", id: "custom-url-hint", text: "Sent by the server, and only to origins its operator allows with sageport serve --allow-test-target ORIGIN." }),
      el("fieldset", {}, el("legend", { text: "Headers" }), headerRows,
        el("button", { type: "button", text: "Add header", onclick: () => addHeaderRow() }))),
    el("div", { class: "send-row" }, send, sendReason, el("span", { class: "muted", text: "Ctrl+Enter or ⌘+Enter sends from the editor." })));

  panel.replaceChildren(form, el("h2", { text: "Inference output" }), stack);
  fetchJson("/console/api/settings").then((settings) => {
    if (!settings.custom_url_allowed) {
      form.querySelector("#custom-url-hint").textContent = "This server allows no custom URL yet: its operator can allow origins with sageport serve --allow-test-target ORIGIN.";
    }
  }).catch(() => {});

  function validate() {
    let problem = null;
    if (state.kind === "json") problem = jsonProblem(editor.getText());
    else if (state.kind === "file" && !state.file) problem = "Choose a file to send.";
    bodyStatus.textContent = problem || (state.kind === "json" ? "Valid JSON." : "");
    bodyStatus.classList.toggle("invalid", Boolean(problem));
    send.disabled = Boolean(problem);
    sendReason.textContent = problem ? `Send Request is disabled: ${problem}` : "";
    return problem;
  }

  function switchKind(value, keepContentType = false) {
    state.kind = value;
    editorHost.hidden = value === "file";
    fileInput.hidden = value !== "file";
    format.hidden = value !== "json";
    editor.setLanguage(value === "json" ? "json" : "plain");
    if (!keepContentType) contentType.value = BODY_KINDS[value].contentType;
    validate();
  }
  kind.addEventListener("change", () => switchKind(kind.value));
  fileInput.addEventListener("change", () => { state.file = fileInput.files[0] || null; validate(); });
  format.addEventListener("click", () => {
    if (jsonProblem(editor.getText()) === null) editor.setText(JSON.stringify(JSON.parse(editor.getText()), null, 2));
  });
  switchKind(state.kind, true);

  function currentRequest() {
    const headers = [...headerRows.querySelectorAll(".header-row")]
      .map((row) => [row.querySelector(".header-name").value.trim(), row.querySelector(".header-value").value])
      .filter(([name]) => name);
    return {
      endpoint, kind: state.kind, text: state.kind === "file" ? null : editor.getText(),
      fileName: state.file?.name || null, contentType: contentType.value.trim(),
      accept: accept.value.trim(), variant: variant.value, customUrl: customUrl.value.trim(), headers,
    };
  }

  async function submit() {
    if (validate() !== null) return;
    const request = currentRequest();
    const { fileName, ...remembered } = request;
    window.localStorage.setItem(storageKey(endpoint, "request"), JSON.stringify(remembered));
    const envelope = {
      content_type: request.contentType, accept: request.accept, target_variant: request.variant || null,
      custom_url: request.customUrl || null, headers: request.headers,
    };
    if (request.kind === "file") envelope.body_base64 = await fileToBase64(state.file);
    else envelope.body = request.text;

    const card = { id: crypto.randomUUID(), request, status: "Pending", sentAt: Date.now() / 1000 };
    state.cards.unshift(card);
    stack.prepend(renderCard(card, actions));
    saveCards(endpoint, state.cards);
    announce("Request sent.");
    const controller = new AbortController();
    state.controllers.set(card.id, controller);
    try {
      const response = await fetch(`/console/api/endpoints/${encodeURIComponent(endpoint)}/invocations`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(await csrfHeaders()) },
        body: JSON.stringify(envelope),
        signal: controller.signal,
        credentials: "same-origin",
      });
      const payload = await response.json();
      if (response.status === 401) goToSignIn();
      // A non-2xx response means the server rejected the test request before it reached the endpoint.
      card.result = response.ok ? payload : { error: payload.error, rejected: true };
      card.status = response.ok ? payload.status : "Failed";
    } catch (error) {
      if (error.name === "AbortError") {
        card.status = "Cancelled";
      } else {
        card.status = "Failed";
        card.result = { error: { code: "NetworkError", message: `The console could not reach the server: ${error.message}` }, rejected: true };
      }
    }
    state.controllers.delete(card.id);
    card.completedAt = Date.now() / 1000;
    redraw(card);
    if (card.status === "Complete") announce(`Request complete in ${card.result.execution_ms.toFixed(1)} milliseconds.`);
    else if (card.status === "Failed") announce(`Request failed: ${card.result.error.code}. See Failure Reason.`);
    else announce("Request cancelled.");
  }

  const actions = {
    cancel: (card) => state.controllers.get(card.id)?.abort(),
    showLogs,
    announce,
    edit(card) {
      const request = card.request;
      kind.value = request.kind;
      switchKind(request.kind, true);
      contentType.value = request.contentType;
      accept.value = request.accept;
      variant.value = request.variant || "";
      customUrl.value = request.customUrl || "";
      headerRows.replaceChildren();
      for (const [name, value] of request.headers) addHeaderRow(name, value);
      if (request.text !== null) editor.setText(request.text);
      validate();
      editor.focus();
    },
  };

  function draw() {
    stack.replaceChildren(...state.cards.map((card) => renderCard(card, actions)));
  }

  // Replace one card only, so other cards keep their open disclosures and snippets.
  function redraw(card) {
    const old = stack.querySelector(`[data-card-id="${card.id}"]`);
    const fresh = renderCard(card, actions);
    if (old) old.replaceWith(fresh);
    else stack.prepend(fresh);
    saveCards(endpoint, state.cards);
  }

  draw();
  const timer = window.setInterval(() => {
    if (!panel.isConnected) { window.clearInterval(timer); return; }
    tickElapsed(stack);
    refreshTimes(stack);
  }, 100);
}

function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
