// An agent's messages as threads: a reply under the message it answers (reply_to), and the
// threads of one correlation_id together.

import { h, shortId, statusBadge, summary, when } from "../dom.js";

function messageLine(m, agentId) {
  const direction = m.from_agent_id === agentId ? `sent to ${shortId(m.to_agent_id) || "project"}` : `received from ${shortId(m.from_agent_id)}`;
  return h("div", { class: "msg", "data-communication-id": m.communication_id },
    when(m.created_at), " · ", h("strong", {}, direction), " · ", m.type, " · ", statusBadge(m.status),
    h("div", {}, h("code", {}, summary(m.content, 200))));
}

function tree(message, children, agentId) {
  const replies = children.get(message.communication_id) || [];
  return h("li", {}, messageLine(message, agentId),
    replies.length ? h("ul", { class: "thread" }, replies.map((r) => tree(r, children, agentId))) : null);
}

/** The messages (any order) as nested threads, grouped by correlation_id. */
export function threads(messages, agentId) {
  if (!messages.length) return h("p", { class: "muted" }, "No messages sent or received.");
  const sorted = [...messages].sort((a, b) => a.created_at.localeCompare(b.created_at));
  const ids = new Set(sorted.map((m) => m.communication_id));
  const children = new Map();
  const roots = [];
  for (const m of sorted) {
    if (m.reply_to && ids.has(m.reply_to)) {
      if (!children.has(m.reply_to)) children.set(m.reply_to, []);
      children.get(m.reply_to).push(m);
    } else {
      roots.push(m);
    }
  }
  const groups = new Map();
  for (const m of roots) {
    const key = m.correlation_id || `message ${m.communication_id}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(m);
  }
  return h("ul", { class: "threads" }, [...groups].reverse().map(([key, list]) => h("li", { class: "conversation" },
    h("h3", {}, key.startsWith("message ") ? "Conversation" : `Conversation ${key}`),
    h("ul", { class: "thread" }, list.map((m) => tree(m, children, agentId))))));
}
