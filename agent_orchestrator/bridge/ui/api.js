// The bridge's REST API and its event stream, with the credential the user typed in.
// Errors are thrown as ApiError carrying the problem+json body the bridge answered.

const CREDENTIAL = "ao.credential";

export function credential() {
  try {
    return JSON.parse(sessionStorage.getItem(CREDENTIAL) || "null");
  } catch {
    return null;
  }
}

export function setCredential(value) {
  if (value) sessionStorage.setItem(CREDENTIAL, JSON.stringify(value));
  else sessionStorage.removeItem(CREDENTIAL);
}

function authHeaders() {
  const c = credential();
  if (!c || !c.value) return {};
  return c.kind === "bearer" ? { Authorization: `Bearer ${c.value}` } : { "X-API-Key": c.value };
}

/** An error answered by the bridge (or the network), with its problem+json. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** The URL of an API path, relative to where the page is served (a proxy prefix works). */
export function apiUrl(path, query) {
  const url = new URL(`../${path.replace(/^\//, "")}`, document.baseURI);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

export async function api(method, path, { query, body, headers } = {}) {
  const init = { method, headers: { Accept: "application/json", ...authHeaders(), ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch (error) {
    throw new ApiError(0, { title: "Network error", detail: `the bridge did not answer: ${error.message}` });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const problem = data && typeof data === "object" && !Array.isArray(data)
      ? data
      : { title: response.statusText || "Error", detail: text.slice(0, 500) || `HTTP ${response.status}` };
    if (response.status === 401) window.dispatchEvent(new CustomEvent("ao-unauthorized", { detail: problem }));
    throw new ApiError(response.status, problem);
  }
  return data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body, query) => api("POST", path, { body: body ?? {}, query });

/** Every item of a paged list, up to ``max``. */
export async function allPages(path, query = {}, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(path, { ...query, limit: 200, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

function parseBlock(block) {
  const event = { id: null, kind: "message", data: "" };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = Number(value);
    else if (field === "event") event.kind = value;
    else if (field === "data") event.data += value;
  }
  return event.data ? event : null;
}

/**
 * GET /api/events read with fetch (EventSource cannot send a credential header). It
 * reconnects by itself and resumes after the last event seen, sending Last-Event-ID.
 * onStatus(state, lastEventId, error) is told "live", "reconnecting" or "stopped".
 */
export function eventStream({ agentId, kind, lastEventId = null, onEvent, onStatus = () => {} }) {
  let stopped = false;
  let last = lastEventId;
  let controller = null;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function run() {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (last !== null && last !== undefined) headers["Last-Event-ID"] = String(last);
        const response = await fetch(apiUrl("/api/events", { agent_id: agentId, kind }), {
          headers, signal: controller.signal, cache: "no-store",
        });
        if (!response.ok) {
          let problem;
          try { problem = await response.json(); } catch { problem = { detail: `HTTP ${response.status}` }; }
          throw new ApiError(response.status, problem);
        }
        onStatus("live", last);
        delay = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const event = parseBlock(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (!event) continue;
            if (event.id !== null) last = event.id;
            let data;
            try { data = JSON.parse(event.data); } catch { data = event.data; }
            onEvent({ id: event.id, kind: event.kind, data });
          }
        }
      } catch (error) {
        if (stopped) break;
        if (error instanceof ApiError && [400, 401, 403].includes(error.status)) {
          onStatus("stopped", last, error);
          return;
        }
      }
      if (stopped) break;
      onStatus("reconnecting", last);
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
    onStatus("stopped", last);
  }
  run();
  return {
    stop() { stopped = true; controller?.abort(); },
    /** Drop the connection and connect again, resuming after the last event. */
    reconnect() { controller?.abort(); },
    get lastEventId() { return last; },
  };
}
