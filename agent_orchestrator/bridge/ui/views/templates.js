// Templates: the catalogue, one template's versions, a diff between two versions, and how
// many agents use each version.

import { allPages, get } from "../api.js";
import { diffTable } from "../diff.js";
import { fill, h, jsonBlock, statusBadge, when } from "../dom.js";

const COMPARED = ["name", "description", "agent_type", "config_schema", "default_configuration", "prompt_template", "changelog"];

function comparable(version) {
  return Object.fromEntries(COMPARED.map((key) => [key, version[key] ?? null]));
}

async function catalogue(root) {
  const templates = await allPages("/api/templates", {}, 1000);
  fill(root, h("h1", {}, "Templates"), templates.length
    ? h("table", { class: "templates" },
      h("thead", {}, h("tr", {}, ["Name", "Agent type", "Latest version", "Changed", "Description"].map((t) => h("th", {}, t)))),
      h("tbody", {}, templates.map((t) => h("tr", {},
        h("td", {}, h("a", { href: `#/templates/${t.template_id}` }, t.name)), h("td", {}, t.agent_type),
        h("td", {}, `version ${t.latest_version}`), h("td", {}, when(t.version_created_at)), h("td", {}, t.description || "")))))
    : h("p", { class: "muted" }, "No templates."));
}

export async function render(root, [templateId]) {
  if (!templateId) return catalogue(root);
  const [versions, counts] = await Promise.all([
    get(`/api/templates/${templateId}/versions`).then((r) => r.items),
    get("/api/agent-counts", { template_id: templateId }),
  ]);
  const latest = versions.at(-1);
  const numbers = versions.map((v) => v.version).reverse();
  const option = (n) => h("option", { value: n }, `version ${n}`);
  const left = h("select", { id: "template-diff-from", "aria-label": "Diff from version" }, numbers.map(option));
  const right = h("select", { id: "template-diff-to", "aria-label": "Diff to version" }, numbers.map(option));
  left.value = String(numbers[1] ?? numbers[0]);
  right.value = String(numbers[0]);
  const out = h("div", { class: "template-diff" });
  const byNumber = new Map(versions.map((v) => [v.version, v]));
  const show = () => fill(out, diffTable(comparable(byNumber.get(Number(left.value))), comparable(byNumber.get(Number(right.value))), `version ${left.value}`, `version ${right.value}`));
  left.onchange = show;
  right.onchange = show;
  show();
  fill(root,
    h("h1", {}, `Template ${latest.name}`, latest.deleted_at ? " (retired)" : ""),
    h("p", {}, h("a", { href: "#/templates" }, "All templates"), " · ", h("a", { href: `#/agents?template_id=${templateId}` }, `Its agents (${counts.total})`)),
    h("div", { class: "grid2" },
      h("section", { "aria-labelledby": "versions-heading" }, h("h2", { id: "versions-heading" }, "Versions and the agents that use them"),
        h("table", { class: "versions" },
          h("thead", {}, h("tr", {}, ["Version", "Created", "Changelog", "Agents"].map((t) => h("th", {}, t)))),
          h("tbody", {}, [...versions].reverse().map((v) => h("tr", { "data-version": v.version },
            h("td", {}, `version ${v.version}`), h("td", {}, when(v.version_created_at)), h("td", {}, v.changelog || "—"),
            h("td", { class: "uses" }, `${counts.by_template_version[String(v.version)] || 0} agents`)))))),
      h("section", { "aria-labelledby": "template-diff-heading" }, h("h2", { id: "template-diff-heading" }, "Diff between two versions"),
        h("div", { class: "row" }, left, " → ", right), out)),
    h("h2", {}, `Latest version (${latest.version})`),
    h("div", { class: "grid2" }, h("div", {}, h("h3", {}, "Configuration schema"), jsonBlock(latest.config_schema)),
      h("div", {}, h("h3", {}, "Default configuration"), jsonBlock(latest.default_configuration))),
    latest.prompt_template ? [h("h3", {}, "Prompt template"), h("pre", {}, latest.prompt_template)] : null,
    h("p", { class: "muted" }, "Agents of this template by status: ",
      Object.entries(counts.by_status).map(([s, n]) => h("span", {}, statusBadge(s), ` ${n} `))));
  return null;
}
