// One agent: details, liveness and recovery, a live timeline, state revisions with a diff,
// checkpoints (create, restore, schedule), its tasks and its conversations.

import { allPages, eventStream, get, post } from "../api.js";
import { jsonDiff, diffTable } from "../diff.js";
import { ago, attempt, confirmDialog, debounce, fill, h, jsonBlock, liveIndicator, shortId, showError, statusBadge, summary, when } from "../dom.js";
import { threads } from "./conversations.js";
import { taskTable } from "./tasks.js";

const ACTIONS = [
  ["initialize", "Initialize", ["CREATED"]],
  ["activate", "Activate", ["READY", "PAUSED"]],
  ["pause", "Pause", ["ACTIVE"]],
  ["terminate", "Terminate", ["CREATED", "INITIALIZING", "READY", "ACTIVE", "PAUSED", "ERROR"]],
];
const MAX_TIMELINE = 300;
const LIFECYCLE = new Set(["initializing", "ready", "active", "paused", "error", "terminated"]);

function section(id, title, ...body) {
  return h("section", { id: `section-${id}`, "aria-labelledby": `heading-${id}` },
    h("h2", { id: `heading-${id}`, tabindex: "-1" }, title), ...body);
}

function details(agent) {
  const rows = [
    ["Agent id", h("code", {}, agent.agent_id)], ["Type", agent.type], ["Project", agent.project_id || "—"],
    ["Status", h("span", {}, statusBadge(agent.status), agent.status_reason ? ` — ${agent.status_reason}` : "")],
    ["Template", agent.template_id ? h("a", { href: `#/templates/${agent.template_id}` }, `${shortId(agent.template_id)} version ${agent.template_version}`) : "—"],
    ["Version", agent.version], ["Created", when(agent.created_at)], ["Updated", when(agent.updated_at)],
    ["Description", agent.description || "—"],
  ];
  return h("dl", { class: "fields" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function liveness(agent, history, onRecover) {
  const recoveries = history.filter((t) => (t.from ?? t.from_status) === "ERROR" && t.to !== "TERMINATED");
  const losses = history.filter((t) => t.to === "ERROR");
  const last = recoveries.at(-1);
  return h("div", {},
    h("dl", { class: "fields" },
      h("dt", {}, "Last heartbeat"), h("dd", { class: "last-heartbeat" }, agent.last_heartbeat_at ? h("span", {}, when(agent.last_heartbeat_at), ` (${ago(agent.last_heartbeat_at)})`) : "never"),
      h("dt", {}, "Times in ERROR"), h("dd", {}, String(losses.length), losses.length ? ` (last: ${losses.at(-1).reason || "no reason"})` : ""),
      h("dt", {}, "Recovery attempts"), h("dd", { class: "recoveries" }, String(recoveries.length), last ? h("span", {}, " (last ", when(last.at), ` by ${last.actor}: ${last.reason || "no reason"})`) : "")),
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "recover", disabled: agent.status !== "ERROR", onclick: onRecover }, "Recover"),
      agent.status !== "ERROR" ? h("span", { class: "muted" }, "Recover applies to an agent in ERROR.") : null));
}

function timelineItem(at, what, text) {
  return h("li", { "data-at": String(new Date(at).getTime()) }, when(at), h("span", {}, what), h("span", {}, text));
}

/** Put an item in the timeline by its time, newest first. */
function place(timeline, item) {
  const at = Number(item.dataset.at);
  const after = [...timeline.children].find((li) => Number(li.dataset.at) <= at);
  timeline.insertBefore(item, after || null);
  while (timeline.children.length > MAX_TIMELINE) timeline.lastChild.remove();
}

function transitionItem(t) {
  const from = t.from ?? t.from_status;
  return timelineItem(t.at, h("span", {}, "status → ", statusBadge(t.to)), `${from || "—"} → ${t.to} by ${t.actor}${t.reason ? `: ${t.reason}` : ""}`);
}

function eventItem(id, kind, data) {
  return timelineItem(data.occurred_at, h("strong", { class: "event-kind" }, kind), h("span", {}, `#${id} `, summary(data.data, 140)));
}

export async function render(root, [agentId]) {
  let agent = await get(`/api/agents/${agentId}`);
  const live = liveIndicator();
  const header = h("div");
  const overview = h("div");
  const timeline = h("ol", { class: "timeline", "aria-live": "polite", "aria-label": "Timeline, newest first" });
  const stateBox = h("div");
  const checkpointBox = h("div");
  const taskBox = h("div");
  const conversationBox = h("div");
  let history = [];
  let revisions = [];
  let current = null;

  async function lifecycle(verb, label) {
    const ok = await confirmDialog(`${label} ${agent.name}`, h("p", {}, `${label} this agent (now `, statusBadge(agent.status), ")?"), label, verb === "terminate");
    if (ok) await attempt(async () => { agent = await post(`/api/agents/${agentId}/${verb}`, { reason: "from the dashboard" }); await refreshAgent(); });
  }

  async function recover() {
    const body = h("p", {}, "Recover this agent: restore its latest recoverable checkpoint (overwriting the current state), requeue its tasks and move it to ACTIVE.");
    if (await confirmDialog(`Recover ${agent.name}`, body, "Recover")) {
      await attempt(async () => { agent = await post(`/api/agents/${agentId}/recover`, { reason: "from the dashboard" }); await refreshAgent(); });
    }
  }

  async function refreshAgent() {
    agent = await get(`/api/agents/${agentId}`);
    history = await allPages(`/api/agents/${agentId}/history`, {}, 2000);
    fill(header,
      h("h1", {}, agent.name, " ", statusBadge(agent.status), " ", live),
      h("div", { class: "toolbar" }, ACTIONS.map(([verb, label, from]) => h("button", {
        type: "button", "data-action": verb, disabled: !from.includes(agent.status), class: verb === "terminate" ? "danger" : "",
        onclick: () => lifecycle(verb, label),
      }, label)),
      h("span", { class: "muted" }, "Jump to:"),
      ["details", "timeline", "state", "checkpoints", "tasks", "conversations"].map((id) => h("button", {
        type: "button", onclick: () => { const el = document.getElementById(`heading-${id}`); el.scrollIntoView(); el.focus(); },
      }, id))));
    fill(overview, h("div", { class: "grid2" },
      h("div", {}, h("h3", {}, "Details"), details(agent), h("h3", {}, "Liveness"), liveness(agent, history, recover)),
      h("div", {}, h("h3", {}, "Configuration"), jsonBlock(agent.configuration),
        h("h3", {}, "Metadata"), jsonBlock(agent.metadata),
        agent.prompt_template ? [h("h3", {}, "Prompt template"), h("pre", {}, agent.prompt_template)] : null)));
  }

  async function refreshState() {
    current = await get(`/api/agents/${agentId}/state`);
    revisions = (await get(`/api/agents/${agentId}/state/history`, { limit: 64 })).items;
    const byRevision = new Map([[current.revision, current], ...revisions.map((r) => [r.revision, r])]);
    const numbers = [...byRevision.keys()].sort((a, b) => b - a);
    const option = (n) => h("option", { value: n }, `revision ${n}${n === current.revision ? " (current)" : ""}`);
    const left = h("select", { id: "diff-from", "aria-label": "Diff from revision" }, numbers.map(option));
    const right = h("select", { id: "diff-to", "aria-label": "Diff to revision" }, numbers.map(option));
    left.value = String(numbers[1] ?? numbers[0]);
    right.value = String(numbers[0]);
    const out = h("div", { class: "state-diff" });
    const show = () => fill(out, diffTable(byRevision.get(Number(left.value)).state, byRevision.get(Number(right.value)).state, `revision ${left.value}`, `revision ${right.value}`));
    left.onchange = show;
    right.onchange = show;
    show();
    fill(stateBox, h("div", { class: "grid2" },
      h("div", {}, h("h3", {}, `Current state, revision `, h("span", { class: "state-revision" }, String(current.revision)), " ", h("span", { class: "muted" }, current.updated_at ? ago(current.updated_at) : "")), jsonBlock(current.state)),
      h("div", {}, h("h3", {}, "Diff between two revisions"), h("div", { class: "row" }, left, " → ", right), out,
        h("p", { class: "muted" }, `${revisions.filter((r) => r.revision !== current.revision).length} earlier revisions kept.`))));
  }

  async function restore(checkpoint) {
    const old = [current, ...revisions].find((r) => r.revision === checkpoint.state_revision);
    const body = h("div", {},
      h("p", {}, `Restoring checkpoint ${checkpoint.label || shortId(checkpoint.checkpoint_id)} (state revision ${checkpoint.state_revision}, taken `, when(checkpoint.created_at),
        `) overwrites the current state, revision ${current.revision}. The restore becomes a new revision, so restoring again can undo it.`),
      old ? [h("h3", {}, "What changes in the state"), diffTable(current.state, old.state, `now (revision ${current.revision})`, `checkpoint (revision ${old.revision})`)]
        : h("p", { class: "muted" }, "Revision ", String(checkpoint.state_revision), " is no longer in the state history, so its content cannot be shown here."),
      h("p", {}, `${jsonDiff(current.state, old?.state ?? current.state).length} paths differ.`));
    if (!(await confirmDialog("Restore this checkpoint?", body, "Restore", true))) return;
    if (await attempt(() => post(`/api/agents/${agentId}/checkpoints/${checkpoint.checkpoint_id}/restore`))) {
      await Promise.all([refreshState(), refreshCheckpoints()]).catch(showError);
    }
  }

  async function refreshCheckpoints() {
    const list = (await get(`/api/agents/${agentId}/checkpoints`)).items;
    const label = h("input", { id: "checkpoint-label", placeholder: "label (optional)" });
    const recoverable = h("input", { type: "checkbox", id: "checkpoint-recoverable", checked: true });
    const interval = h("input", { id: "schedule-interval", type: "number", min: 0, placeholder: "seconds", class: "narrow" });
    const keep = h("input", { id: "schedule-keep", type: "number", min: 1, placeholder: "all", class: "narrow" });
    const scheduled = h("span", { role: "status", class: "schedule-report" });
    fill(checkpointBox,
      h("form", { class: "toolbar", onsubmit: async (e) => {
        e.preventDefault();
        if (await attempt(() => post(`/api/agents/${agentId}/checkpoint`, { label: label.value || null, recoverable: recoverable.checked }))) await refreshCheckpoints();
      } }, h("label", {}, "Label", label), h("label", { class: "inline" }, recoverable, "recoverable"), h("button", { type: "submit", class: "primary", id: "create-checkpoint" }, "Create checkpoint")),
      h("form", { class: "toolbar", onsubmit: async (e) => {
        e.preventDefault();
        await attempt(async () => {
          const reply = await post(`/api/agents/${agentId}/schedule-checkpoint`, { interval_s: Number(interval.value || 0), keep_last: keep.value ? Number(keep.value) : null });
          scheduled.textContent = reply.active ? `Scheduled every ${reply.interval_s} s${reply.keep_last ? `, keeping the last ${reply.keep_last}` : ""}.` : "Schedule cancelled.";
        });
      } }, h("label", {}, "Every (s; 0 cancels)", interval), h("label", {}, "Keep last", keep), h("button", { type: "submit" }, "Schedule"), scheduled),
      list.length ? h("table", { class: "checkpoints" },
        h("thead", {}, h("tr", {}, ["Taken", "Label", "State revision", "Agent status", "Recoverable", "Scheduled", "Size", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, list.map((c) => h("tr", { "data-checkpoint-id": c.checkpoint_id },
          h("td", {}, when(c.created_at)), h("td", {}, c.label || "—"), h("td", {}, String(c.state_revision)),
          h("td", {}, statusBadge(c.agent_status)), h("td", {}, c.recoverable ? "yes" : "no"), h("td", {}, c.scheduled ? "yes" : "no"),
          h("td", {}, `${c.size_bytes} B (${c.storage})`),
          h("td", {}, h("button", { type: "button", onclick: () => restore(c) }, "Restore"))))))
        : h("p", { class: "muted" }, "No checkpoints."));
  }

  async function refreshTasks() {
    const items = (await get(`/api/agents/${agentId}/tasks`, { limit: 50 })).items;
    fill(taskBox, taskTable(items, false), h("p", {}, h("a", { href: `#/tasks?agent_id=${agentId}` }, "All of this agent's tasks")));
  }

  async function refreshConversations() {
    const items = await allPages(`/api/agents/${agentId}/communications`, {}, 400);
    fill(conversationBox, threads(items, agentId));
  }

  const loadedAt = Date.now();
  await refreshAgent();
  fill(root, header,
    section("details", "Details and liveness", overview),
    section("timeline", "Timeline (transitions and events, newest first)", timeline),
    section("state", "State", stateBox),
    section("checkpoints", "Checkpoints", checkpointBox),
    section("tasks", "Tasks", taskBox),
    section("conversations", "Conversations", conversationBox));
  const shown = new Set(history.map((t) => t.version));
  for (const t of history) place(timeline, transitionItem(t));
  await Promise.all([refreshState(), refreshCheckpoints(), refreshTasks(), refreshConversations()].map((p) => p.catch(showError)));

  // Every event of this agent since the stream began, then live ones as they happen.
  const stream = eventStream({
    agentId, lastEventId: 0, onStatus: live.update,
    onEvent: ({ id, kind, data }) => {
      // A transition's event is the transition already shown from the history.
      if (!(LIFECYCLE.has(kind) && shown.has(data.version))) place(timeline, eventItem(id, kind, data));
      // Replayed events are already in what was loaded; newer ones change it.
      if (new Date(data.occurred_at).getTime() >= loadedAt - 2000) {
        pending.add(kind);
        refresh();
      }
    },
  });
  const pending = new Set();
  const refresh = debounce(() => {
    const kinds = [...pending];
    pending.clear();
    for (const kind of kinds) refreshFor(kind);
  }, 200);
  const refreshFor = (kind) => {
    const work = [];
    if (!kind.startsWith("task_") && !kind.startsWith("message_")) work.push(refreshAgent());
    if (kind === "state_updated" || kind.startsWith("checkpoint_")) work.push(refreshState(), refreshCheckpoints());
    if (kind.startsWith("task_")) work.push(refreshTasks());
    if (kind.startsWith("message_")) work.push(refreshConversations());
    Promise.all(work).catch(showError);
  };
  return () => stream.stop();
}
