// Small DOM helpers shared by the views: elements, status words, times, errors and dialogs.

import { ApiError } from "./api.js";

/** h("a", {href: "#"}, "text", child, ...): an element; null/false children are left out. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A status, in words (its colour only adds to them). */
export const statusBadge = (status) => h("span", { class: `status s-${status}` }, status);

export const shortId = (id) => (id ? String(id).slice(-8) : "");

export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return h("time", { datetime: date.toISOString(), title: date.toISOString() }, date.toLocaleString());
}

export function ago(value) {
  if (!value) return "never";
  const seconds = Math.round((Date.now() - new Date(value).getTime()) / 1000);
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

export const jsonBlock = (value) => h("pre", {}, JSON.stringify(value, null, 2));

export function summary(value, length = 80) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

export function debounce(fn, ms = 300) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Show an error (an API problem or any other) above the view; never a blank page. */
export function showError(error) {
  const box = document.getElementById("errors");
  const problem = error instanceof ApiError ? error.problem : { title: "Error", detail: String(error?.message || error) };
  const status = error instanceof ApiError && error.status ? ` (${error.status}${problem.code ? `, ${problem.code}` : ""})` : "";
  const detailsList = (problem.errors || []).map((e) => h("li", {}, h("code", {}, e.path || ""), " ", e.message));
  const item = h("div", { class: "problem" },
    h("div", {},
      h("strong", {}, problem.detail || problem.title || "Something went wrong", status),
      problem.title && problem.detail ? h("div", { class: "muted" }, problem.title) : null,
      detailsList.length ? h("ul", {}, detailsList) : null),
    h("button", { type: "button", onclick: () => item.remove(), "aria-label": "Dismiss error" }, "Dismiss"));
  box.append(item);
  while (box.children.length > 4) box.firstChild.remove();
}

export function clearErrors() {
  document.getElementById("errors").replaceChildren();
}

/** A modal dialog asking to confirm; resolves true only when confirmed. */
export function confirmDialog(title, body, confirmLabel = "Confirm", danger = false) {
  const dialog = document.getElementById("dialog");
  return new Promise((resolve) => {
    const finish = (answer) => { dialog.close(); resolve(answer); };
    const yes = h("button", { type: "button", class: danger ? "danger" : "primary", onclick: () => finish(true) }, confirmLabel);
    dialog.replaceChildren(
      h("h2", { id: "dialog-title" }, title),
      h("div", {}, body),
      h("menu", {},
        h("button", { type: "button", onclick: () => finish(false) }, "Cancel"),
        yes));
    dialog.setAttribute("aria-labelledby", "dialog-title");
    dialog.onclose = () => resolve(false);
    dialog.showModal();
    yes.focus();
  });
}

/** Run an action; its error is shown, and it answers whether it succeeded. */
export async function attempt(action) {
  try {
    await action();
    return true;
  } catch (error) {
    showError(error);
    return false;
  }
}

/** A "live" indicator that an event stream's onStatus can drive. */
export function liveIndicator() {
  const el = h("span", { class: "live off", role: "status" }, "connecting");
  el.update = (state, last) => {
    el.className = `live ${state === "live" ? "on" : "off"}`;
    const after = last !== null && last !== undefined ? ` (after event #${last})` : "";
    el.textContent = state === "live" ? "live" : state === "reconnecting" ? `reconnecting${after}` : "stopped";
  };
  return el;
}

/** Replace an element's children (arrays flattened, null/false left out, as h does). */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}
