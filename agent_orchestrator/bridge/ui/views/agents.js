// Agents: filters saved in the URL, counts by status, live rows, bulk lifecycle actions.

import { allPages, eventStream, get, post } from "../api.js";
import { ago, confirmDialog, debounce, fill, h, liveIndicator, shortId, showError, statusBadge, when } from "../dom.js";
import { saveQuery } from "../route.js";

export const STATUSES = ["CREATED", "INITIALIZING", "READY", "ACTIVE", "PAUSED", "ERROR", "TERMINATED"];
const FILTERS = ["status", "type", "project_id", "template_id", "name"];
const BULK = [
  ["initialize", "Initialize"],
  ["activate", "Activate"],
  ["pause", "Pause"],
  ["terminate", "Terminate"],
];

function agentRow(agent, selected, onToggle) {
  const template = agent.template_id ? `${shortId(agent.template_id)} v${agent.template_version}` : "—";
  return h("tr", { "data-agent-id": agent.agent_id },
    h("td", {}, h("input", {
      type: "checkbox", checked: selected.has(agent.agent_id),
      "aria-label": `Select ${agent.name}`, onchange: (e) => onToggle(agent.agent_id, e.target.checked),
    })),
    h("td", {}, h("a", { href: `#/agents/${agent.agent_id}` }, agent.name), h("div", { class: "muted" }, h("code", {}, shortId(agent.agent_id)))),
    h("td", { class: "agent-status" }, statusBadge(agent.status), agent.status_reason ? h("div", { class: "muted" }, agent.status_reason) : null),
    h("td", {}, agent.type),
    h("td", {}, agent.project_id || "—"),
    h("td", {}, template),
    h("td", {}, agent.last_heartbeat_at ? ago(agent.last_heartbeat_at) : "never"),
    h("td", {}, when(agent.updated_at)));
}

export async function render(root, _params, query) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) || ""]));
  const selected = new Set();
  let agents = [];
  let nextCursor = null;

  const templates = await allPages("/api/templates", {}, 500).catch((error) => { showError(error); return []; });
  const field = (name, label, control) => h("label", {}, label, control);
  const status = h("select", { id: "filter-status", name: "status" },
    h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  const type = h("input", { id: "filter-type", name: "type", placeholder: "any type" });
  const project = h("input", { id: "filter-project", name: "project_id", placeholder: "any project" });
  const template = h("select", { id: "filter-template", name: "template_id" },
    h("option", { value: "" }, "any template"),
    templates.map((t) => h("option", { value: t.template_id }, `${t.name} (${t.agent_type})`)));
  const name = h("input", { id: "filter-name", name: "name", type: "search", placeholder: "name contains…" });
  const controls = { status, type, project_id: project, template_id: template, name };
  for (const [key, control] of Object.entries(controls)) control.value = filters[key];

  const counts = h("div", { class: "counts", role: "group", "aria-label": "Agents by status" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", hidden: true, onclick: () => load(true) }, "Load more");
  const live = liveIndicator();
  const selection = h("span", { class: "muted", "aria-live": "polite" }, "none selected");
  const bulkButtons = BULK.map(([verb, label]) => h("button", {
    type: "button", disabled: true, "data-bulk": verb, class: verb === "terminate" ? "danger" : "",
    onclick: () => bulk(verb, label),
  }, `${label} selected`));
  const allBox = h("input", { type: "checkbox", "aria-label": "Select all shown agents", onchange: (e) => {
    for (const a of agents) e.target.checked ? selected.add(a.agent_id) : selected.delete(a.agent_id);
    renderRows();
  } });

  function updateSelection() {
    selection.textContent = selected.size ? `${selected.size} selected` : "none selected";
    for (const b of bulkButtons) b.disabled = selected.size === 0;
  }

  function toggle(id, on) {
    on ? selected.add(id) : selected.delete(id);
    updateSelection();
  }

  function renderRows() {
    fill(tbody, ...agents.map((a) => agentRow(a, selected, toggle)));
    if (!agents.length) tbody.append(h("tr", {}, h("td", { colspan: 8 }, "No agents match these filters.")));
    more.hidden = !nextCursor;
    updateSelection();
  }

  function readFilters() {
    for (const [key, control] of Object.entries(controls)) filters[key] = control.value.trim();
    saveQuery(filters);
  }

  async function loadCounts() {
    const { status: _ignored, ...rest } = filters;
    const reply = await get("/api/agent-counts", rest);
    fill(counts,
      h("span", { class: "muted" }, `${reply.total} agents:`),
      STATUSES.map((s) => h("button", {
        type: "button", "aria-pressed": String(filters.status === s), "data-status": s,
        onclick: () => { status.value = filters.status === s ? "" : s; changed(); },
      }, `${s} ${reply.by_status[s] || 0}`)));
  }

  async function load(append = false) {
    const page = await get("/api/agents", { ...filters, limit: 50, cursor: append ? nextCursor : null });
    agents = append ? [...agents, ...page.items] : page.items;
    nextCursor = page.next_cursor;
    renderRows();
  }

  const changed = debounce(async () => {
    readFilters();
    try {
      await Promise.all([load(), loadCounts()]);
    } catch (error) {
      showError(error);
    }
  }, 250);
  for (const control of Object.values(controls)) {
    control.addEventListener(control.tagName === "SELECT" ? "change" : "input", changed);
  }

  async function bulk(verb, label) {
    const chosen = agents.filter((a) => selected.has(a.agent_id));
    const body = h("div", {},
      h("p", {}, `${label} these ${chosen.length} agents?`),
      h("ul", {}, chosen.map((a) => h("li", {}, a.name, " — now ", statusBadge(a.status)))));
    if (!(await confirmDialog(`${label} ${chosen.length} agents`, body, `${label} ${chosen.length}`, verb === "terminate"))) return;
    const results = await Promise.allSettled(chosen.map((a) => post(`/api/agents/${a.agent_id}/${verb}`, { reason: "from the dashboard" })));
    const failed = results.map((r, i) => [r, chosen[i]]).filter(([r]) => r.status === "rejected");
    for (const [r, a] of failed) showError(Object.assign(r.reason, { message: `${a.name}: ${r.reason.message}` }));
    report.textContent = `${label}: ${chosen.length - failed.length} done, ${failed.length} failed.`;
    selected.clear();
    await Promise.all([load(), loadCounts()]).catch(showError);
  }
  const report = h("span", { role: "status", class: "bulk-report" });

  async function refreshAgent(agentId) {
    if (!agents.some((a) => a.agent_id === agentId)) return;
    let fresh;
    try {
      fresh = await get(`/api/agents/${agentId}`);
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    const index = agents.findIndex((a) => a.agent_id === agentId);
    if (index < 0) return;
    if (!fresh) agents.splice(index, 1);
    // Answers may arrive out of order: keep the newest version.
    else if (fresh.version >= agents[index].version) agents[index] = fresh;
    else return;
    renderRows();
    tbody.querySelector(`tr[data-agent-id="${agentId}"]`)?.classList.add("flash");
  }
  const reloadAll = debounce(() => Promise.all([load(), loadCounts()]).catch(showError), 400);
  const reloadCounts = debounce(() => loadCounts().catch(showError), 400);

  fill(root,
    h("h1", {}, "Agents ", live),
    h("form", { class: "row", role: "search", onsubmit: (e) => e.preventDefault() },
      field("status", "Status", status), field("type", "Type", type), field("project", "Project", project),
      field("template", "Template", template), field("name", "Name", name)),
    counts,
    h("div", { class: "toolbar" }, h("label", { class: "inline" }, allBox, "All shown"), selection, bulkButtons, report),
    h("table", { class: "agents" },
      h("thead", {}, h("tr", {}, h("th", {}, h("span", { class: "skip" }, "select")), h("th", {}, "Name"), h("th", {}, "Status"),
        h("th", {}, "Type"), h("th", {}, "Project"), h("th", {}, "Template"), h("th", {}, "Heartbeat"), h("th", {}, "Updated"))),
      tbody),
    more);
  await Promise.all([load(), loadCounts()]);

  const stream = eventStream({
    onStatus: live.update,
    onEvent: ({ kind, data }) => {
      if (kind === "created" || kind === "deleted") reloadAll();
      else if (data?.agent_id && !kind.startsWith("task_") && !kind.startsWith("message_")) {
        refreshAgent(data.agent_id).catch(showError);
        reloadCounts();
      }
    },
  });
  return () => stream.stop();
}
