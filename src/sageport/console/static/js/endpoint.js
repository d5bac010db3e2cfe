// An endpoint's page: status and FailureReason, then the Overview, Test
// inference and Logs tabs. The open tab is the URL's ?tab= parameter.
import {
  CHANGING_STATUSES, absoluteTime, el, fetchJson, setBreadcrumb, statusBadge,
} from "./format.js";
import { renderTestInference } from "./test-inference.js";

const TABS = [["overview", "Overview"], ["test", "Test inference"], ["logs", "Logs"]];
const REFRESH_MS = 2000;

export async function renderEndpoint(main, name) {
  document.title = `${name} · Sageport`;
  setBreadcrumb([["Endpoints", "/"], [name, null]]);
  let detail;
  try {
    detail = await fetchJson(`/console/api/endpoints/${encodeURIComponent(name)}`);
  } catch (error) {
    main.replaceChildren(el("h1", { text: name }), el("p", { class: "alert", role: "alert", text: error.message }), el("p", {}, el("a", { href: "/", text: "Back to endpoints" })));
    return;
  }

  const header = el("div", { class: "endpoint-header" });
  const tabList = el("div", { role: "tablist", "aria-label": "Endpoint sections" });
  const panels = {};
  const buttons = {};
  for (const [id, label] of TABS) {
    buttons[id] = el("button", {
      type: "button", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`, text: label,
      onclick: () => selectTab(id, true),
      onkeydown: (event) => moveTab(event, id),
    });
    panels[id] = el("section", { role: "tabpanel", id: `panel-${id}`, "aria-labelledby": `tab-${id}`, tabindex: "0", hidden: true });
    tabList.append(buttons[id]);
  }
  main.replaceChildren(header, tabList, ...Object.values(panels));
  renderHeader(header, detail);
  renderOverview(panels.overview, detail);
  const rendered = new Set(["overview"]);

  function selectTab(id, push) {
    for (const [other] of TABS) {
      buttons[other].setAttribute("aria-selected", String(other === id));
      buttons[other].tabIndex = other === id ? 0 : -1;
      panels[other].hidden = other !== id;
    }
    if (push) {
      const url = new URL(window.location.href);
      url.searchParams.set("tab", id);
      window.history.pushState({}, "", url);
    }
    if (id === "test" && !rendered.has("test")) renderTestInference(panels.test, detail, () => selectTab("logs", true));
    if (id === "logs") renderLogs(panels.logs, name);
    rendered.add(id);
  }

  function moveTab(event, id) {
    const index = TABS.findIndex(([tab]) => tab === id);
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const [nextId] = TABS[(index + step + TABS.length) % TABS.length];
    selectTab(nextId, true);
    buttons[nextId].focus();
  }

  const requested = new URL(window.location.href).searchParams.get("tab");
  selectTab(TABS.some(([id]) => id === requested) ? requested : "overview", false);
  window.addEventListener("popstate", () => {
    const tab = new URL(window.location.href).searchParams.get("tab") || "overview";
    if (main.contains(tabList)) selectTab(tab, false);
  });
  refreshWhileChanging(main, header, panels.overview, detail, name);
}

function refreshWhileChanging(main, header, overview, detail, name) {
  if (!CHANGING_STATUSES.has(detail.endpoint.EndpointStatus)) return;
  window.setTimeout(async () => {
    if (!header.isConnected) return;
    let fresh;
    try {
      fresh = await fetchJson(`/console/api/endpoints/${encodeURIComponent(name)}`);
    } catch {
      return;
    }
    Object.assign(detail, fresh);
    renderHeader(header, detail);
    renderOverview(overview, detail);
    refreshWhileChanging(main, header, overview, detail, name);
  }, REFRESH_MS);
}

function renderHeader(header, detail) {
  const endpoint = detail.endpoint;
  const parts = [el("h1", {}, endpoint.EndpointName, " ", statusBadge(endpoint.EndpointStatus))];
  if (endpoint.FailureReason) {
    parts.push(el("div", { class: "alert", role: "alert" },
      el("h2", { text: "Failure reason" }),
      el("pre", { class: "failure-reason", text: endpoint.FailureReason })));
  }
  header.replaceChildren(...parts);
}

function renderOverview(panel, detail) {
  const endpoint = detail.endpoint;
  const facts = [
    ["Status", statusBadge(endpoint.EndpointStatus)],
    ["ARN", el("code", { text: endpoint.EndpointArn })],
    ["Created", absoluteTime(endpoint.CreationTime)],
    ["Last modified", absoluteTime(endpoint.LastModifiedTime)],
    ["Endpoint config", endpoint.EndpointConfigName + (detail.config ? "" : " (deleted)")],
  ];
  const variants = el("table", { class: "variants" },
    el("caption", { text: "Production variants" }),
    el("thead", {}, el("tr", {}, ["Variant", "Model", "Instance type", "Instances", "Weight"].map((label) => el("th", { scope: "col", text: label })))),
    el("tbody", {}, detail.variants.map((variant) => el("tr", {},
      el("td", { text: variant.VariantName }),
      el("td", { text: variant.ModelName + (detail.models[variant.ModelName] ? "" : " (deleted)") }),
      el("td", { text: variant.InstanceType || "—" }),
      el("td", { text: String(variant.CurrentInstanceCount ?? variant.InitialInstanceCount ?? "—") }),
      el("td", { text: String(variant.CurrentWeight ?? variant.InitialVariantWeight ?? "—") })))));
  const models = Object.entries(detail.models).filter(([, model]) => model).map(([modelName, model]) => {
    const container = model.PrimaryContainer || (model.Containers || [])[0] || {};
    return el("div", { class: "model" }, el("h3", { text: `Model ${modelName}` }),
      el("dl", {}, el("dt", { text: "Image" }), el("dd", { text: container.Image || "—" }),
        el("dt", { text: "Model data" }), el("dd", {}, el("code", { text: container.ModelDataUrl || "—" }))));
  });
  panel.replaceChildren(
    el("dl", { class: "facts" }, facts.map(([label, value]) => [el("dt", { text: label }), el("dd", {}, value)])),
    el("div", { class: "table-scroll" }, variants), ...models);
}

async function renderLogs(panel, name) {
  const refresh = el("button", { type: "button", text: "Refresh logs", onclick: () => renderLogs(panel, name) });
  let payload;
  try {
    payload = await fetchJson(`/console/api/endpoints/${encodeURIComponent(name)}/logs?tail=500`);
  } catch (error) {
    panel.replaceChildren(refresh, el("p", { class: "alert", text: error.message }));
    return;
  }
  const blocks = payload.instances.map((instance) => el("section", { class: "log" },
    el("h3", { text: `${instance.variant} / ${instance.instance_id}` }),
    el("pre", { tabindex: "0", "aria-label": `Output of instance ${instance.instance_id}`, text: instance.lines.join("\n") || "(no output yet)" })));
  panel.replaceChildren(el("div", { class: "toolbar" }, refresh,
    el("span", { class: "muted", text: `Last 500 lines per instance, read ${absoluteTime(payload.read_at)}` })),
  ...(blocks.length ? blocks : [el("p", { class: "muted", text: "No instance output yet." })]));
}
