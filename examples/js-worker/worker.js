#!/usr/bin/env node
// A worker for agent-orchestrator in plain JavaScript, on the official NATS clients alone
// (@nats-io/transport-node, @nats-io/jetstream, @nats-io/kv): no Python SDK involved.
//
//   node worker.js --agent-id <agent_id> [--nats nats://127.0.0.1:4222]
//
// It does what the Python SDK's AgentWorker does, as docs/worker-protocol.md describes:
//   - heartbeats: writes the agent's key in KV bucket `agent_heartbeats` (subject
//     `$KV.agent_heartbeats.<agent_id>`) every third of the agent's heartbeat window, with the
//     window as the message's time to live (header `Nats-TTL`);
//   - status: reads the agent (`agent.get`) and follows its status events
//     (`agent.event.<agent_id>.*`, plain NATS); it pulls only while the agent is ACTIVE;
//   - consumers: creates `tasks-<agent_id>` on AGENT_TASKS and `inbox-<agent_id>` on
//     AGENT_MESSAGES itself, filtered on the agent's subject and configured from the stream's
//     metadata (`agent-orchestrator.*`: ack wait, max deliveries, inactive threshold), and
//     deletes them when it stops;
//   - tasks: claims each assignment with `task.start` (refused while the agent is not ACTIVE:
//     the assignment goes back for a moment), acknowledges it, counts the words of
//     `input.text`, reports `task.progress` (also its heartbeat, which is how it learns of a
//     cancellation) and ends with `task.complete` (`{"words": n}`) or `task.fail`;
//   - messages: asks `communication.handover` whether it may hand each one over (offered),
//     logs it, confirms it in the next `communication.handover` (delivered) and then
//     acknowledges it.
// It exits (status 0) once the agent is terminated or deleted, or on SIGINT / SIGTERM.

import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import { connect } from "@nats-io/transport-node";
import {
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

const HEARTBEATS_BUCKET = "agent_heartbeats";
const TASKS_STREAM = "AGENT_TASKS";
const MESSAGES_STREAM = "AGENT_MESSAGES";
const REQUEST_TIMEOUT_MS = 5_000;
const POLL_MS = 2_000; // how long one pull waits for a message (the client's minimum is 1 s)
const RETRY_MS = 1_000;
const CONFIRM_RETRY_MS = 30_000; // how long a delivery confirmation is retried while unavailable
const DEFAULT_WINDOW_S = 15; // configuration.liveness.heartbeat_window_s when the agent sets none
const REFRESH_MS = 5_000; // how often an agent that is not ACTIVE is read again
const METADATA_PREFIX = "agent-orchestrator.";

const WORKER_ID = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

function log(line) {
  console.log(`${new Date().toISOString()} ${line}`);
}

/** An error reply of the service (`{"error": {code, message, details}}`), or `unavailable`
 * when nothing answered in time. */
class ServiceError extends Error {
  constructor(code, message, details) {
    super(`${code}: ${message}`);
    this.code = code;
    this.details = details;
  }
}

/** One command: JSON request, JSON reply; an error reply becomes a ServiceError. */
async function request(nc, subject, body) {
  let msg;
  try {
    msg = await nc.request(subject, JSON.stringify(body), { timeout: REQUEST_TIMEOUT_MS });
  } catch (err) {
    // No responders, a timeout, a reconnect: the service is not there; safe to retry.
    throw new ServiceError("unavailable", `no answer on ${subject}: ${err.message}`);
  }
  const reply = msg.json();
  if (reply && typeof reply === "object" && Object.keys(reply).length === 1 && reply.error) {
    throw new ServiceError(reply.error.code, reply.error.message, reply.error.details);
  }
  return reply;
}

/** Sleep that ends early (without throwing) when `signal` aborts. */
async function pause(ms, signal) {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    // aborted
  }
}

function isGone(err) {
  return (
    (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound) ||
    /consumer (not found|deleted)/i.test(String(err?.message))
  );
}

/** What the worker knows of its agent's status: agent.get, then its status events. */
class AgentStatus {
  constructor(nc, agentId) {
    this.nc = nc;
    this.agentId = agentId;
    this.status = null;
    this.version = -1;
  }

  get active() {
    return this.status === "ACTIVE";
  }

  get ended() {
    return this.version >= 0 && (this.status === null || this.status === "TERMINATED");
  }

  learn(status, version) {
    if (version >= this.version) {
      this.status = status;
      this.version = version;
    }
  }

  async open() {
    const sub = this.nc.subscribe(`agent.event.${this.agentId}.*`);
    (async () => {
      for await (const msg of sub) {
        const kind = msg.subject.split(".").pop();
        const statuses = ["created", "initializing", "ready", "active", "paused", "error"];
        if (kind === "deleted") this.learn(null, msg.json().version);
        else if (kind === "terminated" || statuses.includes(kind)) {
          this.learn(kind.toUpperCase(), msg.json().version);
        }
      }
    })();
    this.sub = sub;
    return await this.refresh();
  }

  async refresh() {
    try {
      const agent = await request(this.nc, "agent.get", { agent_id: this.agentId });
      this.learn(agent.status, agent.version);
      return agent;
    } catch (err) {
      if (err.code === "not_found") this.learn(null, this.version + 1);
      else if (err.code !== "unavailable") throw err;
      return null;
    }
  }

  /** Wait until the agent is ACTIVE or ended, or `ms` passed; reads it every REFRESH_MS. */
  async waitActive(ms, signal) {
    const until = Date.now() + ms;
    let refreshAt = Date.now() + REFRESH_MS;
    while (!this.active && !this.ended && !signal.aborted && Date.now() < until) {
      await pause(100, signal);
      if (Date.now() >= refreshAt) {
        await this.refresh();
        refreshAt = Date.now() + REFRESH_MS;
      }
    }
  }
}

/** Create (or join) the agent's consumer on `stream`, as the stream's metadata says. */
async function createConsumer(jsm, stream, name, subject) {
  const info = await jsm.streams.info(stream);
  const meta = info.config.metadata ?? {};
  const setting = (key, fallback) => Number(meta[METADATA_PREFIX + key] ?? fallback);
  await jsm.consumers.add(stream, {
    durable_name: name,
    filter_subject: subject,
    deliver_policy: "all",
    ack_policy: "explicit",
    ack_wait: Math.round(setting("ack_wait_s", 30) * 1e9),
    max_deliver: setting("max_deliveries", 5),
    max_ack_pending: setting("max_ack_pending", 1000),
    inactive_threshold: Math.round(setting("inactive_threshold_s", 60) * 1e9),
    description: "Created by a running worker of the agent; removed when it stops.",
  });
}

/** A consumer this worker created for its agent, re-created should it disappear. */
class AgentConsumer {
  constructor(js, jsm, stream, name, subject) {
    Object.assign(this, { js, jsm, stream, name, subject });
  }

  async open() {
    await createConsumer(this.jsm, this.stream, this.name, this.subject);
    this.consumer = await this.js.consumers.get(this.stream, this.name);
  }

  /** The next message, or null; a consumer that is gone is created again. */
  async next() {
    try {
      return await this.consumer.next({ expires: POLL_MS });
    } catch (err) {
      if (!isGone(err)) throw err;
      await this.open();
      return null;
    }
  }

  async remove() {
    try {
      await this.jsm.consumers.delete(this.stream, this.name);
    } catch {
      // gone already, or unreachable: nats-server removes it after its inactive threshold
    }
  }
}

/** Pull messages one at a time and hand each to `handle` while the agent is ACTIVE, until it
 * has ended or `signal` aborts. */
async function pullLoop(queue, status, signal, handle) {
  while (!signal.aborted && !status.ended) {
    if (!status.active) {
      await status.waitActive(POLL_MS, signal);
      continue;
    }
    let msg;
    try {
      msg = await queue.next();
    } catch (err) {
      log(`pull from ${queue.name} failed: ${err.message}; retrying`);
      await pause(RETRY_MS, signal);
      continue;
    }
    if (msg !== null) await handle(msg);
  }
}

// ---- heartbeats -------------------------------------------------------------------------

/** Write the agent's heartbeat key once, with the window as its time to live. */
async function beat(js, agentId, windowS) {
  const value = { by: "worker", worker: WORKER_ID, at: new Date().toISOString() };
  try {
    // KV put() sets no per-key TTL, so publish to the key's subject with a Nats-TTL header.
    await js.publish(`$KV.${HEARTBEATS_BUCKET}.${agentId}`, JSON.stringify(value), {
      ttl: `${windowS}s`,
    });
  } catch (err) {
    log(`heartbeat of ${agentId} not written: ${err.message}`);
  }
}

/** Beat every third of the window until `signal` aborts. */
async function heartbeat(js, agentId, windowS, signal) {
  for (;;) {
    await pause((windowS * 1000) / 3, signal);
    if (signal.aborted) return;
    await beat(js, agentId, windowS);
  }
}

// ---- tasks ------------------------------------------------------------------------------

/** The task handler: `{"text": ...}` -> `{"words": n}`; `parameters.seconds_per_word` makes
 * it slow (with a progress report per word), to watch progress or cancel it. */
async function countWords(task, report, signal) {
  const input = task.input;
  const text = input && typeof input === "object" ? String(input.text ?? "") : String(input ?? "");
  const words = text.split(/\s+/).filter(Boolean);
  const delay = Number(task.parameters?.seconds_per_word ?? 0);
  for (let done = 1; delay > 0 && done <= words.length; done++) {
    await sleep(delay * 1000, undefined, { signal }); // throws AbortError once cancelled
    await report(Math.floor((done * 100) / words.length), `${done} of ${words.length} words`);
  }
  return { words: words.length };
}

/** A third of the time left before the service gives the attempt up (deadline_at). */
function reportInterval(task) {
  if (task.status !== "RUNNING" || !task.deadline_at) return 1000;
  return Math.max(200, (Date.parse(task.deadline_at) - Date.now()) / 3);
}

class TaskRun {
  constructor(nc, task) {
    this.nc = nc;
    this.task = task;
    this.cancelled = new AbortController();
  }

  /** task.progress; a `conflict` or `not_found` reply means the attempt is no longer ours
   * (cancelled, timed out, or retried elsewhere): stop working on it. */
  async progress(progress, message) {
    const body = { task_id: this.task.task_id, attempt: this.task.attempts };
    if (progress !== undefined) body.progress = progress;
    if (message !== undefined) body.message = message;
    try {
      this.task = await request(this.nc, "task.progress", body);
    } catch (err) {
      if (err.code === "conflict" || err.code === "not_found") {
        log(`task ${this.task.task_id}: ${err.message}; stopping`);
        this.cancelled.abort();
      } else if (err.code !== "unavailable") {
        throw err;
      }
    }
  }

  /** Report (an empty task.progress) every third of the time to the deadline. */
  async keepAlive(signal) {
    while (!signal.aborted && !this.cancelled.signal.aborted) {
      await pause(reportInterval(this.task), AbortSignal.any([signal, this.cancelled.signal]));
      if (signal.aborted || this.cancelled.signal.aborted) return;
      await this.progress().catch((err) => log(`task ${this.task.task_id}: ${err.message}`));
    }
  }

  /** task.complete or task.fail, retried while the service is unavailable. */
  async end(subject, body) {
    for (;;) {
      try {
        return await request(this.nc, subject, {
          task_id: this.task.task_id,
          attempt: this.task.attempts,
          ...body,
        });
      } catch (err) {
        if (err.code !== "unavailable") {
          log(`task ${this.task.task_id}: ${subject} refused: ${err.message}`);
          return null;
        }
        await sleep(RETRY_MS);
      }
    }
  }
}

async function runAttempt(nc, task) {
  const run = new TaskRun(nc, task);
  const beating = new AbortController();
  const keepAlive = run.keepAlive(beating.signal);
  const cancelled = () => log(`task ${task.task_id} (attempt ${task.attempts}) was cancelled`);
  try {
    const result = await countWords(
      task,
      (progress, message) => run.progress(progress, message),
      run.cancelled.signal,
    );
    if (run.cancelled.signal.aborted) return cancelled(); // its last report said so
    if (await run.end("task.complete", { result })) {
      log(`task ${task.task_id} (attempt ${task.attempts}): ${result.words} words`);
    }
  } catch (err) {
    if (run.cancelled.signal.aborted) return cancelled();
    log(`task ${task.task_id} (attempt ${task.attempts}) failed: ${err.message}`);
    await run.end("task.fail", { error: String(err.message).slice(0, 4000), retry: false });
  } finally {
    beating.abort();
    await keepAlive;
  }
}

/** One assignment `{task_id, agent_id, attempt}`: claim, acknowledge, run. */
async function takeAssignment(nc, status, msg) {
  let assignment;
  try {
    assignment = msg.json();
  } catch {
    log("dropping a malformed assignment");
    msg.ack();
    return;
  }
  let task;
  try {
    task = await request(nc, "task.start", {
      task_id: assignment.task_id,
      attempt: assignment.attempt,
    });
  } catch (err) {
    if (err.code === "unavailable") {
      // The service is down, or the agent is not ACTIVE (details.reason agent_not_active):
      // the assignment goes back to the stream; try again later.
      if (err.details?.reason === "agent_not_active") await status.refresh();
      msg.nak(RETRY_MS);
    } else {
      // conflict (cancelled, ended, superseded) or not_found: not ours to run.
      log(`not starting ${assignment.task_id}: ${err.message}`);
      msg.ack();
    }
    return;
  }
  msg.ack();
  await runAttempt(nc, task);
}

// ---- messages ---------------------------------------------------------------------------

/** One inbox message (its body is the Communication): ask whether it may be handed over,
 * log it, confirm it, acknowledge it. */
async function receiveMessage(nc, status, msg) {
  let message;
  try {
    message = msg.json();
  } catch {
    msg.term("not JSON");
    return;
  }
  const id = message.communication_id;
  if (message.expires_at && Date.parse(message.expires_at) <= Date.now()) {
    msg.ack(); // too late: the service marks it EXPIRED
    return;
  }
  let check;
  try {
    check = await request(nc, "communication.handover", {
      agent_id: status.agentId,
      offered: [id],
    });
  } catch (err) {
    if (err.code === "not_found") {
      status.learn(null, status.version + 1); // the agent was deleted: stop
      msg.ack();
      return;
    }
    log(`delivery check of ${id} failed: ${err.message}`);
    msg.nak(RETRY_MS);
    return;
  }
  status.learn(check.status, check.version);
  if (check.ended.includes(id)) {
    msg.ack(); // delivered, failed or expired meanwhile: not to be handed over
    return;
  }
  if (!check.accepted.includes(id)) {
    msg.nak(RETRY_MS); // the agent is not ACTIVE: it waits in the stream
    return;
  }
  log(
    `message ${id} from ${message.from_agent_id} (${message.type}): ` +
      `${JSON.stringify(message.content)}`,
  );
  const until = Date.now() + CONFIRM_RETRY_MS;
  let wait = 100;
  for (;;) {
    try {
      const reply = await request(nc, "communication.handover", {
        agent_id: status.agentId,
        delivered: [id],
      });
      const outcome = reply.confirmed.find((c) => c.communication_id === id);
      log(`message ${id} ${outcome?.status ?? "unknown"}`);
      break;
    } catch (err) {
      if (err.code !== "unavailable") {
        log(`message ${id}: confirmation refused: ${err.message}`);
        break;
      }
      if (Date.now() + wait > until) {
        msg.nak(wait); // give it back, to be delivered again
        return;
      }
      msg.working(); // still ours: extend the ack wait
      await sleep(wait);
      wait = Math.min(2_000, wait * 2);
    }
  }
  msg.ack();
}

// ---- main -------------------------------------------------------------------------------

async function main() {
  const { values } = parseArgs({
    options: {
      "agent-id": { type: "string", default: process.env.AGENT_ID },
      nats: { type: "string", default: process.env.NATS_URL ?? "nats://127.0.0.1:4222" },
    },
  });
  const agentId = values["agent-id"];
  if (!agentId) {
    console.error("usage: node worker.js --agent-id <agent_id> [--nats <url>]");
    process.exit(2);
  }
  const nc = await connect({ servers: values.nats.split(","), name: `js-worker ${WORKER_ID}` });
  const js = jetstream(nc);
  const stop = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => stop.abort());

  const jsm = await jetstreamManager(nc);
  const status = new AgentStatus(nc, agentId);
  const agent = await status.open();
  if (agent === null) throw new Error(`agent ${agentId} cannot be read`);
  const windowS = agent.configuration?.liveness?.heartbeat_window_s ?? DEFAULT_WINDOW_S;
  const kv = await new Kvm(js).open(HEARTBEATS_BUCKET); // fails fast if the service never ran

  const tasks = new AgentConsumer(
    js,
    jsm,
    TASKS_STREAM,
    `tasks-${agentId}`,
    `agent.task.${agentId}`,
  );
  const inbox = new AgentConsumer(
    js,
    jsm,
    MESSAGES_STREAM,
    `inbox-${agentId}`,
    `agent.inbox.${agentId}`,
  );
  await Promise.all([tasks.open(), inbox.open()]);
  const beating = new AbortController();
  await beat(js, agentId, windowS);
  const beats = heartbeat(js, agentId, windowS, AbortSignal.any([stop.signal, beating.signal]));
  const first = await kv.get(agentId);
  log(
    `agent ${agentId} is served by worker ${WORKER_ID} (status ${agent.status}, ` +
      `heartbeat every ${(windowS / 3).toFixed(1)} s, ttl ${windowS} s, last beat by ${
        first?.json()?.by ?? "nobody"
      })`,
  );
  await Promise.all([
    pullLoop(tasks, status, stop.signal, (msg) => takeAssignment(nc, status, msg)),
    pullLoop(inbox, status, stop.signal, (msg) => receiveMessage(nc, status, msg)),
  ]);
  beating.abort();
  await beats;
  await Promise.all([tasks.remove(), inbox.remove()]); // a clean stop removes its consumers
  status.sub.unsubscribe();
  log(stop.signal.aborted ? `stopped` : `agent ${agentId} was terminated; bye`);
  await nc.drain();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
