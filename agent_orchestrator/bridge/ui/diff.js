// A diff of two JSON values, by path: what was added, removed or changed.

import { h } from "./dom.js";

function flatten(value, path, out) {
  if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    for (const [key, child] of Object.entries(value)) flatten(child, path ? `${path}.${key}` : key, out);
  } else if (Array.isArray(value) && value.length) {
    value.forEach((child, index) => flatten(child, `${path}[${index}]`, out));
  } else {
    out.set(path || "(whole value)", JSON.stringify(value));
  }
  return out;
}

/** [{op: "added" | "removed" | "changed", path, before, after}], sorted by path. */
export function jsonDiff(before, after) {
  const a = flatten(before, "", new Map());
  const b = flatten(after, "", new Map());
  const changes = [];
  for (const [path, value] of a) {
    if (!b.has(path)) changes.push({ op: "removed", path, before: value, after: undefined });
    else if (b.get(path) !== value) changes.push({ op: "changed", path, before: value, after: b.get(path) });
  }
  for (const [path, value] of b) {
    if (!a.has(path)) changes.push({ op: "added", path, before: undefined, after: value });
  }
  return changes.sort((x, y) => x.path.localeCompare(y.path));
}

/** The diff as a table: each row says in words what happened to one path. */
export function diffTable(before, after, beforeLabel = "before", afterLabel = "after") {
  const changes = jsonDiff(before, after);
  if (!changes.length) return h("p", { class: "diff-empty" }, "No differences.");
  const symbol = { added: "+ added", removed: "− removed", changed: "~ changed" };
  return h("table", { class: "diff" },
    h("thead", {}, h("tr", {}, h("th", {}, "change"), h("th", {}, "path"), h("th", {}, beforeLabel), h("th", {}, afterLabel))),
    h("tbody", {}, changes.map((c) => h("tr", { class: c.op },
      h("td", { class: "op" }, symbol[c.op]),
      h("td", {}, h("code", {}, c.path)),
      h("td", {}, c.before === undefined ? "" : h("code", {}, c.before)),
      h("td", {}, c.after === undefined ? "" : h("code", {}, c.after))))));
}
