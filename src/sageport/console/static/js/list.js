// The endpoints list: search, status filter, sort, paging with an accurate
// total, and a refresh while any endpoint on the page is changing state.
import {
  CHANGING_STATUSES, absoluteTime, el, fetchJson, setBreadcrumb, statusBadge,
} from "./format.js";

const PAGE_SIZE = 20;
const REFRESH_MS = 2000;
const STATUSES = [
  "OutOfService", "Creating", "Updating", "SystemUpdating", "RollingBack",
  "InService", "Deleting", "Failed", "UpdateRollbackFailed",
];

export function renderList(main) {
  document.title = "Endpoints · Sageport";
  setBreadcrumb([["Endpoints", null]]);
  const state = { search: "", status: "", sort: "CreationTime", order: "Descending", page: 1, timer: null };

  const search = el("input", {
    id: "endpoint-search", type: "search", "aria-label": "Search endpoints",
    placeholder: "Search endpoints (press /)", autocomplete: "off",
  });
  const status = el("select", { "aria-label": "Filter by status" },
    el("option", { value: "", text: "All statuses" }),
    STATUSES.map((name) => el("option", { value: name, text: name })));
  const sort = el("select", { "aria-label": "Sort by" },
    el("option", { value: "CreationTime", text: "Creation time" }),
    el("option", { value: "Name", text: "Name" }),
    el("option", { value: "Status", text: "Status" }));
  const order = el("select", { "aria-label": "Sort order" },
    el("option", { value: "Descending", text: "Descending" }),
    el("option", { value: "Ascending", text: "Ascending" }));
  const body = el("tbody");
  const summary = el("p", { id: "endpoint-total", class: "muted", "aria-live": "polite" });
  const previous = el("button", { type: "button", text: "Previous page" });
  const next = el("button", { type: "button", text: "Next page" });

  main.replaceChildren(
    el("h1", { text: "Endpoints" }),
    el("div", { class: "toolbar" }, search, status, sort, order),
    el("div", { class: "table-scroll" }, el("table", { class: "endpoints" },
      el("caption", { class: "visually-hidden", text: "Endpoints" }),
      el("thead", {}, el("tr", {},
        ["Name", "Status", "Created", "Last modified", "Variants"].map((label) => el("th", { scope: "col", text: label })))),
      body)),
    el("div", { class: "pager" }, summary, previous, next),
  );

  let debounce = null;
  const reload = () => load(state, body, summary, previous, next);
  search.addEventListener("input", () => {
    window.clearTimeout(debounce);
    debounce = window.setTimeout(() => { state.search = search.value; state.page = 1; reload(); }, 150);
  });
  status.addEventListener("change", () => { state.status = status.value; state.page = 1; reload(); });
  sort.addEventListener("change", () => { state.sort = sort.value; state.page = 1; reload(); });
  order.addEventListener("change", () => { state.order = order.value; state.page = 1; reload(); });
  previous.addEventListener("click", () => { state.page -= 1; reload(); });
  next.addEventListener("click", () => { state.page += 1; reload(); });
  reload();
}

async function load(state, body, summary, previous, next) {
  window.clearTimeout(state.timer);
  const query = new URLSearchParams({
    search: state.search, status: state.status, sort: state.sort, order: state.order,
    page: String(state.page), page_size: String(PAGE_SIZE),
  });
  let payload;
  try {
    payload = await fetchJson(`/console/api/endpoints?${query}`);
  } catch (error) {
    summary.textContent = `Could not load endpoints: ${error.message}`;
    return;
  }
  body.replaceChildren(...payload.endpoints.map(row));
  if (payload.endpoints.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: state.search || state.status ? "No endpoint matches these filters." : "No endpoints yet. Create one with boto3, the AWS CLI or the SageMaker SDK." })));
  }
  const first = payload.total === 0 ? 0 : (payload.page - 1) * payload.page_size + 1;
  const last = (payload.page - 1) * payload.page_size + payload.endpoints.length;
  summary.textContent = `Showing ${first}–${last} of ${payload.total} endpoint${payload.total === 1 ? "" : "s"}`;
  previous.disabled = payload.page <= 1;
  next.disabled = last >= payload.total;

  if (payload.endpoints.some((endpoint) => CHANGING_STATUSES.has(endpoint.EndpointStatus))) {
    state.timer = window.setTimeout(() => {
      if (body.isConnected) load(state, body, summary, previous, next);
    }, REFRESH_MS);
  }
}

function row(endpoint) {
  const href = `/console/endpoints/${encodeURIComponent(endpoint.EndpointName)}`;
  const variants = endpoint.Variants.map((variant) => {
    const count = variant.CurrentInstanceCount ?? variant.InitialInstanceCount;
    const type = variant.InstanceType ? ` × ${variant.InstanceType}` : " instances";
    return `${variant.VariantName} (${count}${type})`;
  }).join(", ");
  return el("tr", {
    "data-endpoint": endpoint.EndpointName,
    // Double-click opens the endpoint, as in Studio; the name is a real link for Enter and new tabs.
    ondblclick: () => { window.location.href = href; },
  },
  el("td", {}, el("a", { href, text: endpoint.EndpointName })),
  el("td", {}, statusBadge(endpoint.EndpointStatus)),
  el("td", { title: new Date(endpoint.CreationTime * 1000).toISOString(), text: absoluteTime(endpoint.CreationTime) }),
  el("td", { title: new Date(endpoint.LastModifiedTime * 1000).toISOString(), text: absoluteTime(endpoint.LastModifiedTime) }),
  el("td", { text: variants || "—" }));
}
