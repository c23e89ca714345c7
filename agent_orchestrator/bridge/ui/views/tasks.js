// Tasks by status and agent, with progress and result; the inbox of tasks waiting for a
// person, with a form that answers each.

import { allPages, eventStream, get, post } from "../api.js";
import { attempt, debounce, fill, h, jsonBlock, liveIndicator, shortId, showError, statusBadge, summary, when } from "../dom.js";
import { saveQuery } from "../route.js";

export const TASK_STATUSES = ["QUEUED", "RUNNING", "INPUT_REQUIRED", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];

function outcome(task) {
  if (task.status === "SUCCEEDED") return h("code", { title: JSON.stringify(task.result) }, summary(task.result));
  if (task.error) return h("code", {}, summary(task.error?.message ?? task.error));
  if (task.status === "INPUT_REQUIRED") return h("span", {}, "waiting for input: ", summary(task.input_request?.prompt));
  return task.status_reason || "";
}

/** Tasks as a table: status in words, progress as a bar with its percent, outcome. */
export function taskTable(tasks, withAgent = true) {
  if (!tasks.length) return h("p", { class: "muted" }, "No tasks.");
  return h("table", { class: "tasks" },
    h("thead", {}, h("tr", {}, ["Task", withAgent ? "Agent" : null, "Status", "Progress", "Attempts", "Created", "Result or error"].filter(Boolean).map((t) => h("th", {}, t)))),
    h("tbody", {}, tasks.map((t) => h("tr", { "data-task-id": t.task_id },
      h("td", {}, h("details", {}, h("summary", {}, h("code", {}, shortId(t.task_id))), h("h3", {}, "Input"), jsonBlock(t.input), h("h3", {}, "Result"), jsonBlock(t.result ?? t.error))),
      withAgent ? h("td", {}, h("a", { href: `#/agents/${t.agent_id}` }, h("code", {}, shortId(t.agent_id)))) : null,
      h("td", {}, statusBadge(t.status)),
      h("td", {}, h("progress", { max: 100, value: t.progress, "aria-label": `${t.progress} percent` }), ` ${t.progress}%`, t.progress_message ? h("div", { class: "muted" }, t.progress_message) : null),
      h("td", {}, `${t.attempts} of ${t.max_attempts}`),
      h("td", {}, when(t.created_at)),
      h("td", {}, outcome(t))))));
}

/** Form fields for a flat object schema; null when the schema needs the JSON box. */
function schemaFields(schema) {
  if (!schema || schema.type !== "object" || !schema.properties) return null;
  const fields = [];
  for (const [name, prop] of Object.entries(schema.properties)) {
    const required = (schema.required || []).includes(name);
    const label = `${prop.title || name}${required ? " (required)" : ""}`;
    let control;
    if (Array.isArray(prop.enum)) control = h("select", { name }, prop.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    else if (prop.type === "boolean") control = h("input", { type: "checkbox", name });
    else if (prop.type === "integer" || prop.type === "number") control = h("input", { type: "number", name, step: prop.type === "integer" ? 1 : "any", required });
    else if (prop.type === "string") control = h("input", { type: "text", name, required });
    else return null;
    control.dataset.kind = Array.isArray(prop.enum) ? "enum" : prop.type;
    fields.push([name, prop.type === "boolean" ? h("label", { class: "inline" }, control, label) : h("label", {}, label, control), control]);
  }
  return fields;
}

function readFields(fields) {
  const value = {};
  for (const [name, , control] of fields) {
    const kind = control.dataset.kind;
    if (kind === "enum") value[name] = JSON.parse(control.value);
    else if (kind === "boolean") value[name] = control.checked;
    else if (kind === "integer" || kind === "number") { if (control.value !== "") value[name] = Number(control.value); }
    else if (control.value !== "") value[name] = control.value;
  }
  return value;
}

function inboxItem(task, onAnswered) {
  const request = task.input_request || {};
  const fields = schemaFields(request.input_schema);
  const box = fields ? null : h("textarea", { name: "input", "aria-label": "Answer as JSON", required: true }, JSON.stringify(request.default_input ?? "", null, 2));
  const form = h("form", { class: "answer", onsubmit: async (e) => {
    e.preventDefault();
    let input;
    try {
      input = fields ? readFields(fields) : JSON.parse(box.value);
    } catch (error) {
      showError(new Error(`The answer is not valid JSON: ${error.message}`));
      return;
    }
    if (await attempt(() => post(`/api/tasks/${task.task_id}/input`, { input, input_seq: request.input_seq }))) onAnswered();
  } },
    fields ? fields.map(([, label]) => label) : h("label", {}, "Answer (JSON)", box),
    h("button", { type: "submit", class: "primary" }, "Send answer"));
  return h("article", { class: "inbox-item", "data-task-id": task.task_id, "aria-label": `Question of task ${shortId(task.task_id)}` },
    h("h3", {}, "Task ", h("code", {}, shortId(task.task_id)), " of agent ", h("a", { href: `#/agents/${task.agent_id}` }, h("code", {}, shortId(task.agent_id))), ` asks (question ${request.input_seq ?? "?"})`),
    h("p", { class: "prompt" }, typeof request.prompt === "string" ? request.prompt : h("code", {}, JSON.stringify(request.prompt))),
    h("p", { class: "muted" }, "Answer by ", when(request.deadline_at), `; then: ${request.on_timeout ?? "—"}.`),
    request.input_schema ? h("details", {}, h("summary", {}, "Expected answer (JSON Schema)"), jsonBlock(request.input_schema)) : null,
    form);
}

export async function render(root, _params, query) {
  const filters = { status: query.get("status") || "", agent_id: query.get("agent_id") || "" };
  const status = h("select", { id: "task-status" }, h("option", { value: "" }, "any status"), TASK_STATUSES.map((s) => h("option", { value: s }, s)));
  const agent = h("input", { id: "task-agent", placeholder: "agent id" });
  status.value = filters.status;
  agent.value = filters.agent_id;
  const inbox = h("div", { id: "inbox" });
  const list = h("div");
  const live = liveIndicator();

  async function loadInbox() {
    const waiting = await allPages("/api/tasks", { status: "INPUT_REQUIRED" }, 200);
    fill(inbox, waiting.length
      ? h("div", {}, waiting.map((t) => inboxItem(t, reload)))
      : h("p", { class: "muted" }, "No task is waiting for input."));
  }
  async function loadList() {
    const page = await get("/api/tasks", { ...filters, limit: 100 });
    fill(list, taskTable(page.items), page.next_cursor ? h("p", { class: "muted" }, "Showing the newest 100.") : null);
  }
  const reload = () => Promise.all([loadInbox(), loadList()]).catch(showError);
  const changed = debounce(() => {
    filters.status = status.value;
    filters.agent_id = agent.value.trim();
    saveQuery(filters);
    loadList().catch(showError);
  }, 250);
  status.addEventListener("change", changed);
  agent.addEventListener("input", changed);

  fill(root,
    h("h1", {}, "Tasks ", live),
    h("section", { "aria-labelledby": "inbox-heading" }, h("h2", { id: "inbox-heading" }, "Inbox: tasks waiting for input"), inbox),
    h("section", { "aria-labelledby": "tasks-heading" }, h("h2", { id: "tasks-heading" }, "All tasks"),
      h("form", { class: "row", role: "search", onsubmit: (e) => e.preventDefault() }, h("label", {}, "Status", status), h("label", {}, "Agent", agent)),
      list));
  await Promise.all([loadInbox(), loadList()]);
  const later = debounce(reload, 300);
  const stream = eventStream({ onStatus: live.update, onEvent: ({ kind }) => { if (kind.startsWith("task_")) later(); } });
  return () => stream.stop();
}
