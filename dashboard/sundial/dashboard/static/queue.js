// The queue tab (what Bull Board gave): queue length, delayed retries, runs in flight per worker,
// recent failures with a Retry button, the live workers with the targets they offer, and the
// dead letters (read-only: runs no worker could run, with why).

import { ApiError, api } from "./api.js";
import { firstLine, h, reconcile, setAttr, setText, show } from "./dom.js";
import { formatDateTime, formatDuration, formatRelative, formatWhen, onLangChange, t } from "./i18n.js";
import { statusBadge, updateStatusBadge } from "./jobs.js";
import { toast, toastError } from "./toasts.js";

const FAILURES_SHOWN = 6;
// As `sundial doctor`: a run waiting this long for a worker means the pool cannot keep up.
const LAG_WARN_MS = 10_000;
const asArray = (value) => (Array.isArray(value) ? value : []);

const firstDefined = (...values) => values.find((value) => value !== undefined && value !== null);

/** The job a queue entry belongs to, as "namespace/name" when the entry says. */
function entryJobId(entry) {
  if (typeof entry.job === "string") return entry.job;
  if (typeof entry.jobId === "string") return entry.jobId; // the job's uid in run rows
  if (entry.job && typeof entry.job === "object") return entry.job.id || `${entry.job.namespace}/${entry.job.name}`;
  const name = entry.jobName || entry.name;
  if (entry.namespace && name) return `${entry.namespace}/${name}`;
  return name || "";
}

/**
 * One shape out of the server's answer (docs/dashboard.md names the contents, not the keys, so
 * a few spellings are accepted; see the report that came with this page).
 */
export function normalizeQueue(body) {
  const data = body || {};
  const delayedList = asArray(firstDefined(data.delayedRuns, data.delayedRetries, Array.isArray(data.delayed) ? data.delayed : undefined));
  const failed = asArray(firstDefined(data.recentFailures, data.failed, data.failures));

  let inFlight = firstDefined(data.inFlight, data.active, data.running, []);
  if (inFlight && !Array.isArray(inFlight) && typeof inFlight === "object") {
    inFlight = Object.entries(inFlight).map(([worker, runs]) => ({ worker, runs: asArray(runs) }));
  }
  inFlight = asArray(inFlight);
  if (inFlight.length && !Array.isArray(inFlight[0].runs)) {
    // A flat list of runs, each naming its worker: group them.
    const groups = new Map();
    for (const run of inFlight) {
      const worker = run.worker || run.workerId || "?";
      if (!groups.has(worker)) groups.set(worker, []);
      groups.get(worker).push(run);
    }
    inFlight = Array.from(groups, ([worker, runs]) => ({ worker, runs }));
  } else {
    inFlight = inFlight.map((group) => ({ worker: group.worker || group.workerId || group.id || "?", runs: asArray(group.runs) }));
  }

  const workers = asArray(data.workers).map((worker) =>
    typeof worker === "string" ? { id: worker, targets: [] } : {
      id: worker.id || worker.workerId || worker.name || "?",
      targets: asArray(worker.targets),
      lastSeen: firstDefined(worker.lastSeen, worker.lastHeartbeat, worker.seenAt, worker.heartbeatAt),
      inFlight: worker.inFlight,
    });

  const waiting = Number(firstDefined(data.waiting, data.length, data.queueLength, data.queued, data.pending, 0)) || 0;
  const delayedCount = Number(firstDefined(data.delayedTotal, data.delayedCount,
    typeof data.delayed === "number" ? data.delayed : undefined, delayedList.length)) || 0;
  const inFlightCount = inFlight.reduce((sum, group) => sum + group.runs.length, 0);
  const pools = asArray(data.pools).map((pool) => ({
    pool: String(pool.pool || "?"),
    waiting: Number(pool.waiting) || 0,
    oldestWaitingMs: Number(pool.oldestWaitingMs) || 0,
    inFlight: Number(pool.inFlight) || 0,
    delayedTotal: Number(pool.delayedTotal) || 0,
    workers: asArray(pool.workers).length,
  }));
  return { waiting, delayedCount, delayed: delayedList, inFlight, inFlightCount, failed, workers, pools };
}

/** The dead letters the server listed (newest first), and how many it did not. */
export function normalizeDeadLetters(body) {
  const data = body || {};
  return { items: asArray(data.items), total: Number(data.total) || 0, hidden: Number(data.hidden) || 0 };
}

/** "há 12s" from `runningForMs` (or `startedAt`). */
function runningFor(run) {
  if (typeof run.runningForMs === "number") return formatDuration(run.runningForMs);
  return run.startedAt ? t("queue.since", { time: formatRelative(run.startedAt) }) : "";
}

export class QueueView {
  /**
   * @param {{lookupJob: (id: string) => any, onAuthError: (error) => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.readOnly = false;
    this.data = null;
    this.el = (id) => document.getElementById(id);
    this.showAllFailures = false;
    this.el("q-failures-more").addEventListener("click", () => {
      this.showAllFailures = !this.showAllFailures;
      this.render();
    });
    onLangChange(() => this.render());
  }

  setReadOnly(readOnly) {
    this.readOnly = readOnly;
    this.render();
  }

  async refresh() {
    try {
      const [queue, dead] = await Promise.all([api.queue(), api.deadLetters()]);
      this.data = { ...normalizeQueue(queue), dead: normalizeDeadLetters(dead) };
      this.render();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) this.hooks.onAuthError(error);
      else throw error;
    }
  }

  jobLabel(entry) {
    const id = entryJobId(entry);
    const job = id ? this.hooks.lookupJob(id) : null;
    return { id, name: job?.spec?.displayName || entry.displayName || job?.name || id || entry.runId || "?", job };
  }

  zoneOf(job) {
    return job?.spec?.timeZone || "America/Sao_Paulo";
  }

  render() {
    const data = this.data;
    if (!data) return;
    show(this.el("queue-loading"), false);
    show(this.el("queue-content"), true);
    this.renderStats(data);
    this.renderPools(data.pools);
    this.renderFailures(data.failed);
    this.renderInFlight(data.inFlight);
    this.renderDelayed(data.delayed);
    this.renderWorkers(data.workers);
    this.renderDeadLetters(data.dead);
  }

  renderDeadLetters(dead) {
    const letters = dead ? dead.items : [];
    show(this.el("q-dead-empty"), letters.length === 0);
    const hidden = this.el("q-dead-hidden");
    show(hidden, Boolean(dead && dead.hidden));
    setText(hidden, dead && dead.hidden ? t("queue.deadHidden", { n: dead.hidden }) : "");
    reconcile(
      this.el("q-dead"),
      letters,
      (letter) => letter.id,
      () => h(
        "li",
        { class: "q-item" },
        h("div", { class: "q-main" }, h("strong", { class: "q-name" }), h("span", { class: "q-meta muted" })),
        h("p", { class: "q-error" }),
        h("pre", { class: "q-raw" }),
      ),
      (node, letter) => {
        const { name, job } = this.jobLabel(letter);
        setText(node.querySelector(".q-name"), name);
        const meta = node.querySelector(".q-meta");
        setText(meta, ` ${formatRelative(letter.diedAt)}${letter.runId ? ` · ${letter.runId.split(":").slice(1).join(":")}` : ""}`);
        setAttr(meta, "title", formatDateTime(letter.diedAt, this.zoneOf(job)));
        setText(node.querySelector(".q-error"), letter.reason);
        setText(node.querySelector(".q-raw"), letter.excerpt);
      },
    );
  }

  /** One line per worker pool (the default, the launcher, each pool a job names). */
  renderPools(pools) {
    show(this.el("q-pools").parentElement, pools.length > 0);
    reconcile(
      this.el("q-pools"),
      pools,
      (pool) => pool.pool,
      () => h("div", { class: "q-item q-pool" }, h("strong", { class: "q-name" }), h("span", { class: "q-meta muted" })),
      (node, pool) => {
        setText(node.querySelector(".q-name"), pool.pool);
        setText(node.querySelector(".q-meta"), ` ${t("queue.poolSummary", {
          waiting: pool.waiting, oldest: formatDuration(pool.oldestWaitingMs), inFlight: pool.inFlight,
          delayed: pool.delayedTotal, workers: pool.workers,
        })}`);
        node.classList.toggle("is-lagging", pool.oldestWaitingMs > LAG_WARN_MS);
      },
    );
  }

  renderStats(data) {
    const stats = [
      ["waiting", t("queue.waiting"), data.waiting],
      ["delayed", t("queue.delayed"), data.delayedCount],
      ["inflight", t("queue.inFlight"), data.inFlightCount],
      ["workers", t("queue.workers"), data.workers.length],
    ];
    reconcile(
      this.el("queue-stats"),
      stats,
      ([key]) => key,
      ([key]) => h("div", { class: `stat stat-${key}` }, h("dt", {}), h("dd", {})),
      (node, [, label, value]) => {
        setText(node.firstChild, label);
        setText(node.lastChild, String(value));
        node.classList.toggle("is-zero", value === 0);
      },
    );
  }

  renderFailures(all) {
    // One entry per run (its latest attempt): retrying is per run, not per attempt.
    const latest = new Map();
    for (const run of all) {
      const seen = latest.get(run.runId);
      if (!seen || (run.attempt ?? 0) > (seen.attempt ?? 0)) latest.set(run.runId, run);
    }
    const runs = Array.from(latest.values());
    const failed = this.showAllFailures ? runs : runs.slice(0, FAILURES_SHOWN);
    const more = this.el("q-failures-more");
    show(more, runs.length > FAILURES_SHOWN);
    setText(more, this.showAllFailures ? t("queue.showLess") : t("queue.showAll", { n: runs.length }));
    setAttr(more, "aria-expanded", String(Boolean(this.showAllFailures)));
    show(this.el("q-failures-empty"), runs.length === 0);
    reconcile(
      this.el("q-failures"),
      failed,
      (run) => `${run.runId}#${run.attempt ?? ""}`,
      () => {
        const retry = h("button", { type: "button", class: "btn btn-small write-control" });
        retry.addEventListener("click", () => this.retry(retry.run, retry));
        return h(
          "li",
          { class: "q-item" },
          h("div", { class: "q-main" }, h("strong", { class: "q-name" }), statusBadge(null)),
          h("p", { class: "q-meta muted" }),
          h("p", { class: "q-error" }),
          h("div", { class: "q-actions" }, retry),
        );
      },
      (node, run) => {
        const { name, job } = this.jobLabel(run);
        const zone = this.zoneOf(job);
        setText(node.querySelector(".q-name"), name);
        updateStatusBadge(node.querySelector(".status"), run.status || "failed");
        const when = firstDefined(run.completedAt, run.finishedAt, run.startedAt, run.logicalTime);
        const parts = [when ? formatWhen(when, zone) : "", run.attempt ? t("queue.attempt", { n: run.attempt }) : "", run.worker || ""];
        setText(node.querySelector(".q-meta"), parts.filter(Boolean).join(" · "));
        setAttr(node.querySelector(".q-meta"), "title", when ? formatDateTime(when, zone) : null);
        const error = run.errorMessage || run.error || "";
        setText(node.querySelector(".q-error"), firstLine(error));
        setAttr(node.querySelector(".q-error"), "title", error.includes("\n") ? error : null);
        show(node.querySelector(".q-error"), Boolean(error));
        const retry = node.querySelector("button");
        retry.run = { ...run, label: name };
        setText(retry, t("queue.retry"));
        setAttr(retry, "aria-label", t("queue.retryLabel", { name }));
        show(retry, !this.readOnly);
      },
    );
  }

  renderInFlight(groups) {
    const container = this.el("q-inflight");
    show(this.el("q-inflight-empty"), groups.length === 0);
    reconcile(
      container,
      groups,
      (group) => group.worker,
      () => h("div", { class: "q-group" }, h("h3", { class: "q-worker" }), h("ul", { class: "q-list" })),
      (node, group) => {
        setText(node.querySelector(".q-worker"), `${group.worker} (${group.runs.length})`);
        reconcile(
          node.querySelector("ul"),
          group.runs,
          (run) => `${run.runId}#${run.attempt ?? ""}`,
          () => h("li", { class: "q-item q-item-compact" }, h("strong", { class: "q-name" }), h("span", { class: "q-meta muted" })),
          (item, run) => {
            const { name } = this.jobLabel(run);
            setText(item.querySelector(".q-name"), name);
            const parts = [runningFor(run), run.target ? run.target : "",
              run.attempt ? t("queue.attempt", { n: run.attempt }) : ""];
            setText(item.querySelector(".q-meta"), ` ${parts.filter(Boolean).join(" · ")}`);
          },
        );
      },
    );
  }

  renderDelayed(delayed) {
    show(this.el("q-delayed-empty"), delayed.length === 0);
    reconcile(
      this.el("q-delayed"),
      delayed,
      (run) => `${run.runId}#${run.attempt ?? ""}`,
      () => h("li", { class: "q-item q-item-compact" }, h("strong", { class: "q-name" }), h("span", { class: "q-meta muted" })),
      (item, run) => {
        const { name, job } = this.jobLabel(run);
        setText(item.querySelector(".q-name"), name);
        const due = firstDefined(run.dueAt, run.runAt, run.at, run.scheduledFor);
        const parts = [due ? t("queue.dueAt", { time: formatWhen(due, this.zoneOf(job)) }) : "",
          run.attempt ? t("queue.attempt", { n: run.attempt }) : ""];
        setText(item.querySelector(".q-meta"), ` ${parts.filter(Boolean).join(" · ")}`);
      },
    );
  }

  renderWorkers(workers) {
    show(this.el("q-workers-empty"), workers.length === 0);
    reconcile(
      this.el("q-workers"),
      workers,
      (worker) => worker.id,
      () => h("li", { class: "q-item" },
        h("div", { class: "q-main" }, h("span", { class: "live-dot", "aria-hidden": "true" }), h("strong", { class: "q-name" }),
          h("span", { class: "q-meta muted" })),
        h("ul", { class: "target-chips" })),
      (item, worker) => {
        setText(item.querySelector(".q-name"), worker.id);
        setText(item.querySelector(".q-meta"), worker.lastSeen ? ` ${t("queue.lastSeen", { time: formatRelative(worker.lastSeen) })}` : "");
        const targets = worker.targets.map((target) => (typeof target === "string" ? target : target.name));
        const list = item.querySelector(".target-chips");
        setAttr(list, "aria-label", t("queue.targets"));
        reconcile(list, targets, (name) => name, () => h("li", {}, h("code", {})), (li, name) => setText(li.firstChild, name));
      },
    );
  }

  async retry(run, button) {
    if (button.getAttribute("aria-busy") === "true") return;
    setAttr(button, "aria-busy", "true");
    try {
      await api.retryRun(run.runId);
      toast(t("toast.retryRequested", { name: run.label }), { kind: "success" });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) this.hooks.onAuthError(error);
      else toastError(error);
    } finally {
      setAttr(button, "aria-busy", null);
    }
  }
}
