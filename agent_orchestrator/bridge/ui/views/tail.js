// Live tail: every event as it happens, filtered by kind and agent, pausable, and resumed
// after a reconnect from the last event seen (Last-Event-ID).

import { eventStream } from "../api.js";
import { fill, h, liveIndicator, shortId, summary, when } from "../dom.js";
import { saveQuery } from "../route.js";

const KINDS = ["created", "updated", "deleted", "initializing", "ready", "active", "paused", "error", "terminated",
  "state_updated", "checkpoint_created", "checkpoint_restored", "checkpoint_deleted", "message_sent",
  "message_delivered", "message_failed", "task_queued", "task_started", "task_progress", "task_input_required",
  "task_input_provided", "task_succeeded", "task_failed", "task_cancelled"];
const MAX_SHOWN = 500;

export async function render(root, _params, query) {
  const kind = h("select", { id: "tail-kind" }, h("option", { value: "" }, "every kind"), KINDS.map((k) => h("option", { value: k }, k)));
  const agent = h("input", { id: "tail-agent", placeholder: "agent id (or its end)" });
  kind.value = query.get("kind") || "";
  agent.value = query.get("agent_id") || "";
  const list = h("ul", { class: "tail", "aria-label": "Events, newest first" });
  const live = liveIndicator();
  const counter = h("span", { role: "status", class: "tail-counter" }, "0 events");
  let paused = false;
  let seen = 0;
  const held = [];

  const matches = (e) => (!kind.value || e.kind === kind.value) && (!agent.value.trim() || String(e.data?.agent_id || "").endsWith(agent.value.trim()));
  const item = (e) => h("li", { "data-event-id": e.id }, when(e.data?.occurred_at),
    h("span", {}, h("strong", { class: "event-kind" }, e.kind), " ", h("a", { href: `#/agents/${e.data?.agent_id}` }, h("code", {}, shortId(e.data?.agent_id)))),
    h("span", {}, `#${e.id} `, summary(e.data?.data, 160)));
  function show(e) {
    if (!matches(e)) return;
    list.prepend(item(e));
    while (list.children.length > MAX_SHOWN) list.lastChild.remove();
  }
  function updateCounter() {
    counter.textContent = `${seen} events${paused ? `, paused with ${held.length} held` : ""}`;
  }
  const pause = h("button", { type: "button", id: "tail-pause", "aria-pressed": "false", onclick: () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) held.splice(0).forEach(show);
    updateCounter();
  } }, "Pause");
  const refilter = () => {
    saveQuery({ kind: kind.value, agent_id: agent.value.trim() });
    list.replaceChildren();
    for (const e of recent) show(e);
  };
  const recent = [];
  kind.addEventListener("change", refilter);
  agent.addEventListener("input", refilter);

  const stream = eventStream({
    onStatus: live.update,
    onEvent: (e) => {
      seen += 1;
      recent.push(e);
      if (recent.length > MAX_SHOWN) recent.shift();
      if (paused) held.push(e);
      else show(e);
      updateCounter();
    },
  });
  fill(root,
    h("h1", {}, "Live tail ", live),
    h("form", { class: "row", role: "search", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "Kind", kind), h("label", {}, "Agent", agent), pause,
      h("button", { type: "button", id: "tail-reconnect", onclick: () => stream.reconnect() }, "Reconnect"),
      h("button", { type: "button", onclick: () => { list.replaceChildren(); recent.length = 0; } }, "Clear"), counter),
    h("p", { class: "muted" }, "From now on, newest first. After a dropped connection the stream resumes after the last event shown, so none is lost or repeated."),
    list);
  return () => stream.stop();
}
