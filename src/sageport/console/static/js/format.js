// Formatting helpers shared by the console's views: times, sizes, statuses.

export const CHANGING_STATUSES = new Set([
  "Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting",
]);

// Icon and tone for every SageMaker endpoint status. The text is always shown
// beside the icon, so the status never depends on colour alone.
const STATUS_ICONS = {
  InService: ["✓", "ok"],
  Failed: ["✕", "bad"],
  UpdateRollbackFailed: ["✕", "bad"],
  OutOfService: ["○", "idle"],
  Deleting: ["⌫", "busy"],
};

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function statusBadge(status) {
  const [icon, tone] = STATUS_ICONS[status] || (CHANGING_STATUSES.has(status) ? ["⟳", "busy"] : ["•", "idle"]);
  return el(
    "span",
    { class: `status status-${tone}`, "data-status": status },
    el("span", { class: `status-icon${tone === "busy" ? " spin" : ""}`, "aria-hidden": "true", text: icon }),
    el("span", { class: "status-text", text: status }),
  );
}

export function absoluteTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString(undefined, {
    dateStyle: "medium", timeStyle: "medium",
  });
}

export function relativeTime(epochSeconds, now = Date.now() / 1000) {
  const seconds = Math.max(0, Math.round(now - epochSeconds));
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} seconds ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} minute${minutes === 1 ? "" : "s"} ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} hour${hours === 1 ? "" : "s"} ago`;
  const days = Math.floor(hours / 24);
  return `${days} day${days === 1 ? "" : "s"} ago`;
}

// A <time> element showing how long ago, refreshed by refreshTimes().
export function liveTime(epochSeconds) {
  return el("time", {
    datetime: new Date(epochSeconds * 1000).toISOString(),
    title: absoluteTime(epochSeconds),
    "data-epoch": String(epochSeconds),
    text: relativeTime(epochSeconds),
  });
}

export function refreshTimes(root = document) {
  for (const node of root.querySelectorAll("time[data-epoch]")) {
    node.textContent = relativeTime(Number(node.dataset.epoch));
  }
}

export function formatBytes(size) {
  if (size < 1024) return `${size} B`;
  const units = ["KB", "MB", "GB"];
  let value = size / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function formatMs(ms) {
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
}

export function announce(message) {
  const region = document.getElementById("announcer");
  // Clearing first makes screen readers repeat an identical message.
  region.textContent = "";
  window.setTimeout(() => { region.textContent = message; }, 50);
}

export function setBreadcrumb(items) {
  const list = document.getElementById("breadcrumb");
  list.replaceChildren(
    ...items.map(([label, href]) => el("li", {}, href ? el("a", { href, text: label }) : el("span", { "aria-current": "page", text: label }))),
  );
}

// The session as GET /console/api/session describes it, fetched once per page.
// With --auth none it is {auth: "none"}; signed out under sigv4 it is null.
let sessionRequest = null;

export function loadSession() {
  if (!sessionRequest) {
    sessionRequest = fetch("/console/api/session", { credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : null));
  }
  return sessionRequest;
}

// The CSRF token lives only in this page's memory: never in storage, the URL or the HTML.
export async function csrfHeaders() {
  const session = await loadSession();
  return session?.csrf_token ? { "X-CSRF-Token": session.csrf_token } : {};
}

// Only a path on this server may follow sign-in, so ?next= cannot send the user elsewhere.
export function safeNext(value) {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\")) return "/";
  return value.startsWith("/console/signin") ? "/" : value;
}

export function goToSignIn() {
  const next = window.location.pathname + window.location.search;
  window.location.assign(`/console/signin?next=${encodeURIComponent(safeNext(next))}`);
}

export async function fetchJson(url, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  const headers = method === "GET" ? options.headers : { ...(options.headers || {}), ...(await csrfHeaders()) };
  const response = await fetch(url, { ...options, headers, credentials: "same-origin" });
  const payload = await response.json();
  if (response.status === 401) goToSignIn();
  if (!response.ok) {
    const error = new Error(payload.error?.message || `HTTP ${response.status}`);
    error.code = payload.error?.code;
    error.status = response.status;
    throw error;
  }
  return payload;
}
