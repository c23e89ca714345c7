// The dashboard's shell: the router (views by URL hash, filters in its query), the sign-in
// form when the bridge asks for a credential, and errors shown instead of a blank page.

import { credential, get, setCredential } from "./api.js";
import { clearErrors, fill, h, showError } from "./dom.js";
import { currentRoute } from "./route.js";
import * as agent from "./views/agent.js";
import * as agents from "./views/agents.js";
import * as tasks from "./views/tasks.js";
import * as tail from "./views/tail.js";
import * as templates from "./views/templates.js";

const ROUTES = [
  [/^\/agents\/([^/]+)$/, "agents", agent],
  [/^\/agents$/, "agents", agents],
  [/^\/tasks$/, "tasks", tasks],
  [/^\/templates\/([^/]+)$/, "templates", templates],
  [/^\/templates$/, "templates", templates],
  [/^\/tail$/, "tail", tail],
];

let cleanup = null;

async function render() {
  if (cleanup) { try { cleanup(); } catch { /* the old view is gone anyway */ } cleanup = null; }
  clearErrors();
  const root = document.getElementById("view");
  const { path, query } = currentRoute();
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) {
    fill(root, h("h1", {}, "Not found"), h("p", {}, "No view at ", h("code", {}, path), ". ", h("a", { href: "#/agents" }, "Go to the agents.")));
    return;
  }
  const [pattern, nav, view] = found;
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  for (const link of document.querySelectorAll("header nav a")) {
    if (link.dataset.view === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  fill(root, h("p", { class: "muted" }, "Loading…"));
  try {
    cleanup = (await view.render(root, params, query)) || null;
  } catch (error) {
    if (error?.status === 401) return; // the sign-in form is shown instead
    fill(root, h("h1", {}, "This view could not be shown"), h("p", {}, "See the error above; ", h("a", { href: "#/agents" }, "back to the agents"), "."));
    showError(error);
  }
}

function signIn(problem) {
  if (cleanup) { try { cleanup(); } catch { /* gone */ } cleanup = null; }
  const root = document.getElementById("view");
  const value = h("input", { id: "credential", type: "password", autocomplete: "off", required: true });
  const kind = h("select", { id: "credential-kind" },
    h("option", { value: "api_key" }, "API key (X-API-Key)"),
    h("option", { value: "bearer" }, "Token (Authorization: Bearer)"));
  const form = h("form", { class: "login", onsubmit: (event) => {
    event.preventDefault();
    setCredential({ kind: kind.value, value: value.value.trim() });
    showWho();
    render();
  } },
    h("h1", {}, "Sign in"),
    h("p", {}, problem?.detail || "The bridge asks for a credential."),
    h("label", {}, "Kind", kind),
    h("label", {}, "API key or token", value),
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  fill(root, form);
  value.focus();
}

function showWho() {
  const who = document.getElementById("who");
  const c = credential();
  fill(who,
    h("a", { href: "../docs", target: "_blank", rel: "noopener" }, "API docs"),
    c ? h("button", { type: "button", onclick: () => { setCredential(null); showWho(); render(); } }, "Sign out") : null);
}

window.addEventListener("ao-unauthorized", (event) => signIn(event.detail));
window.addEventListener("hashchange", render);
window.addEventListener("unhandledrejection", (event) => showError(event.reason));
window.addEventListener("error", (event) => showError(event.error || event.message));

showWho();
// One call first, so that a bridge with authentication asks for a credential straight away.
get("/api/agent-counts").then(render, (error) => {
  if (error?.status !== 401) render();
});
