// Render a response body preview: JSON as a collapsible tree, CSV as a table,
// images inline, other binary as size and hex. The server sends at most a
// bounded preview, so nothing here ever parses a large body.
import { el, formatBytes, goToSignIn } from "./format.js";

const MAX_TREE_NODES = 2000;
const MAX_CSV_ROWS = 200;

export function renderBody(body, contentType) {
  const type = (contentType || "").toLowerCase();
  const parts = [];
  if (body.truncated) {
    parts.push(el("p", { class: "notice", text: `Showing the first ${formatBytes(body.text !== undefined ? new Blob([body.text]).size : 4096)} of ${formatBytes(body.size)}. Download the whole body below.` }));
  }
  const download = body.download && body.size > 0 ? downloadLink(body) : null;
  if (type.startsWith("image/") && body.url) {
    const image = el("img", { class: "response-image", src: body.url, alt: `Response image (${contentType}, ${formatBytes(body.size)})` });
    image.addEventListener("error", async () => {
      const problem = await resultProblem(body.url);
      image.replaceWith(el("p", { class: "notice result-gone", text: problem?.message || `The response is not an image the browser can show (${contentType}).` }));
      if (problem?.gone) download?.remove();
    }, { once: true });
    parts.push(image);
  } else if (body.text !== undefined) {
    parts.push(renderText(body, type));
  } else if (body.base64 !== undefined) {
    parts.push(el("p", { text: `Binary body, ${formatBytes(body.size)} (${contentType}).` }), el("pre", { class: "hex", tabindex: "0", "aria-label": "Hex preview", text: hexPreview(body.base64) }));
  }
  if (download) parts.push(download);
  if (body.size === 0) parts.push(el("p", { class: "muted", text: "Empty body." }));
  return el("div", { class: "response-body" }, parts);
}

// Cards outlive the bodies they link to: they stay in the browser, while the
// server keeps only its most recent bodies. So the link first checks with HEAD
// that the body is still there, and shows a plain message when it is not.
function downloadLink(body) {
  const link = el("a", { href: body.download, download: "response", text: `Download response body (${formatBytes(body.size)})` });
  const paragraph = el("p", {}, link);
  let checked = false;
  link.addEventListener("click", async (event) => {
    if (checked) {
      checked = false;
      return;
    }
    event.preventDefault();
    const problem = await resultProblem(body.url);
    if (problem) {
      paragraph.replaceChildren(el("span", { class: "notice result-gone", role: "status", text: problem.message }));
      return;
    }
    checked = true;
    link.click();
  });
  return paragraph;
}

// Return null when the server still has a stored body, else {gone, message}
// where gone is true when the server no longer keeps it.
async function resultProblem(url) {
  let response;
  try {
    // no-store: a cached GET of the body would otherwise satisfy the HEAD.
    response = await fetch(url, { method: "HEAD", credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    return { gone: false, message: `The console could not reach the server: ${error.message}` };
  }
  if (response.ok) return null;
  if (response.status === 404) {
    return { gone: true, message: "The server no longer keeps this response body: it keeps the 200 most recent ones (256 MB in all) and drops the oldest first. Send the request again to get it." };
  }
  if (response.status === 401) goToSignIn();
  return { gone: false, message: `The response body could not be fetched: HTTP ${response.status}.` };
}

function renderText(body, type) {
  if (!body.truncated && type.includes("json")) {
    try {
      const value = JSON.parse(body.text);
      const budget = { nodes: MAX_TREE_NODES };
      return el("div", { class: "json-tree", "aria-label": "Response body" }, node(value, null, budget, 0));
    } catch {
      // Not valid JSON after all: show the text as it is.
    }
  }
  if (type.startsWith("text/csv")) return csvTable(body.text, body.truncated);
  return el("pre", { class: "response-text", tabindex: "0", "aria-label": "Response body", text: body.text });
}

function node(value, key, budget, depth) {
  budget.nodes -= 1;
  const label = key === null ? [] : [el("span", { class: "json-key", text: JSON.stringify(key) }), ": "];
  if (value === null || typeof value !== "object") {
    return el("div", { class: "json-leaf" }, label, el("span", { class: `json-${value === null ? "null" : typeof value}`, text: JSON.stringify(value) }));
  }
  const entries = Array.isArray(value) ? value.map((item, index) => [index, item]) : Object.entries(value);
  const open = Array.isArray(value) ? "[" : "{";
  const close = Array.isArray(value) ? "]" : "}";
  const children = [];
  for (const [childKey, child] of entries) {
    if (budget.nodes <= 0) {
      children.push(el("div", { class: "muted", text: "… (more items; download the body to see them all)" }));
      break;
    }
    children.push(node(child, Array.isArray(value) ? null : childKey, budget, depth + 1));
  }
  return el("details", { open: depth < 6 },
    el("summary", {}, label, `${open} ${entries.length} ${Array.isArray(value) ? "item" : "key"}${entries.length === 1 ? "" : "s"} ${close}`),
    el("div", { class: "json-children" }, children));
}

function csvTable(text, truncated) {
  const rows = text.split(/\r?\n/).filter((line) => line.length > 0);
  if (truncated) rows.pop(); // the last line may be cut
  const shown = rows.slice(0, MAX_CSV_ROWS).map(splitCsvLine);
  const table = el("table", { class: "csv", "aria-label": "Response body (CSV)" },
    el("tbody", {}, shown.map((cells) => el("tr", {}, cells.map((cell) => el("td", { text: cell }))))));
  const note = rows.length > MAX_CSV_ROWS ? el("p", { class: "muted", text: `First ${MAX_CSV_ROWS} of ${rows.length} rows.` }) : null;
  return el("div", {}, table, note);
}

function splitCsvLine(line) {
  const cells = [];
  let cell = "";
  let quoted = false;
  for (let index = 0; index < line.length; index += 1) {
    const char = line[index];
    if (quoted && char === '"' && line[index + 1] === '"') { cell += '"'; index += 1; }
    else if (char === '"') quoted = !quoted;
    else if (char === "," && !quoted) { cells.push(cell); cell = ""; }
    else cell += char;
  }
  cells.push(cell);
  return cells;
}

function hexPreview(base64) {
  const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0)).slice(0, 256);
  const lines = [];
  for (let offset = 0; offset < bytes.length; offset += 16) {
    const chunk = Array.from(bytes.slice(offset, offset + 16));
    const hex = chunk.map((byte) => byte.toString(16).padStart(2, "0")).join(" ");
    const ascii = chunk.map((byte) => (byte >= 32 && byte < 127 ? String.fromCharCode(byte) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join("\n");
}
