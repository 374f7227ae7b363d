// Run history of one job, a page at a time (`GET /api/jobs/{id}/runs?limit=&offset=`), refreshed
// by the page's poll while open so a new run shows up without reloading.

import { ApiError, api } from "./api.js";
import { openDialog } from "./dialogs.js";
import { firstLine, h, reconcile, setAttr, setText, show } from "./dom.js";
import { formatDateTime, formatDay, formatDuration, formatTime, onLangChange, t, toDate, triggerLabel } from "./i18n.js";
import { jobName, statusBadge, updateStatusBadge } from "./jobs.js";
import { toastError } from "./toasts.js";

const PAGE_SIZE = 10;

export class HistoryView {
  constructor({ onAuthError }) {
    this.onAuthError = onAuthError;
    this.dialog = document.getElementById("history");
    this.rows = document.getElementById("history-rows");
    this.empty = document.getElementById("history-empty");
    this.range = document.getElementById("history-range");
    this.prev = document.getElementById("history-prev");
    this.next = document.getElementById("history-next");
    this.job = null;
    this.offset = 0;
    this.page = null;
    this.seq = 0;
    this.prev.addEventListener("click", () => this.go(Math.max(0, this.offset - PAGE_SIZE)));
    this.next.addEventListener("click", () => this.go(this.offset + PAGE_SIZE));
    onLangChange(() => this.render());
  }

  get isOpen() {
    return this.dialog.open;
  }

  open(job, opener) {
    this.job = job;
    this.offset = 0;
    this.page = null;
    this.rows.replaceChildren();
    this.render();
    openDialog(this.dialog, opener, () => {
      this.job = null;
    });
    // Focus the table region: the pager's first button may be disabled on page one.
    this.dialog.querySelector(".table-scroll").focus();
    this.refresh();
  }

  /** Newer job data from the list poll (display name, time zone). */
  updateJob(job) {
    if (this.job && job && job.id === this.job.id) {
      this.job = job;
      this.renderTitle();
    }
  }

  go(offset) {
    this.offset = offset;
    this.refresh();
  }

  async refresh() {
    if (!this.isOpen || !this.job) return;
    const seq = ++this.seq;
    const job = this.job;
    try {
      const page = await api.runs(job.id, { limit: PAGE_SIZE, offset: this.offset });
      if (seq !== this.seq || this.job !== job) return;
      const total = Number(page?.total ?? 0);
      if (this.offset > 0 && this.offset >= total) {
        // The history was pruned under us: show the last page there is.
        this.offset = Math.max(0, Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE);
        this.refresh();
        return;
      }
      this.page = { items: Array.isArray(page?.items) ? page.items : [], total };
      this.render();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) this.onAuthError(error);
      else if (seq === this.seq && !error.isNetwork) toastError(error);
    }
  }

  renderTitle() {
    if (!this.job) return;
    const name = jobName(this.job);
    setText(document.getElementById("history-sub"), `${name} · ${this.job.namespace}/${this.job.name}`);
    setText(document.getElementById("history-caption"), t("history.caption", { name }));
  }

  render() {
    if (!this.job) return;
    this.renderTitle();
    const page = this.page;
    const items = page?.items ?? [];
    const zone = this.job.spec?.timeZone || "America/Sao_Paulo";
    reconcile(
      this.rows,
      items,
      (run) => `${run.runId}#${run.attempt ?? 1}`,
      () => this.createRow(),
      (row, run) => this.updateRow(row, run, zone),
    );
    show(this.empty, page === null || items.length === 0);
    setText(this.empty, page === null ? t("history.loading") : t("history.empty"));
    const total = page?.total ?? 0;
    const from = items.length ? this.offset + 1 : 0;
    const to = this.offset + items.length;
    setText(this.range, total ? t("history.range", { from, to, total }) : "");
    this.setDisabled(this.prev, this.offset === 0);
    this.setDisabled(this.next, to >= total);
  }

  setDisabled(button, disabled) {
    if (button.disabled === disabled) return;
    if (disabled && document.activeElement === button) {
      // Keep focus in the pager when its last step is reached.
      (button === this.next ? this.prev : this.next).focus();
    }
    button.disabled = disabled;
  }

  createRow() {
    const output = h("details", { class: "run-output" }, h("summary", {}), h("pre", {}));
    // jobTemplate jobs: the run's pod logs, fetched (as the caller) when opened.
    const logs = h("details", { class: "run-output run-logs" }, h("summary", {}), h("pre", {}));
    logs.addEventListener("toggle", () => {
      if (logs.open && logs.dataset.runId) this.loadLogs(logs, logs.dataset.runId);
    });
    const row = h(
      "tr",
      {},
      h("td", { class: "c-slot" }, h("time", {})),
      h("td", { class: "c-status" }, statusBadge(null)),
      h("td", { class: "c-trigger" }, h("span", { class: "trigger" }), h("span", { class: "reason muted" })),
      h("td", { class: "c-attempt num" }),
      h("td", { class: "c-started" }, h("time", {})),
      h("td", { class: "c-duration num" }),
      h("td", { class: "c-worker" }),
      h("td", { class: "c-details" }, h("span", { class: "run-error" }), output, logs),
    );
    return row;
  }

  updateRow(row, run, zone) {
    const cells = row.children;
    const slot = run.logicalTime ?? run.scheduledFor;
    const slotTime = cells[0].firstChild;
    setText(slotTime, slot ? formatDateTime(slot, zone) : t("history.manual"));
    setAttr(slotTime, "datetime", slot || null);
    updateStatusBadge(cells[1].firstChild, run.status);
    setText(cells[2].querySelector(".trigger"), triggerLabel(run.trigger));
    const reason = run.reason && run.reason !== run.trigger ? run.reason : "";
    setText(cells[2].querySelector(".reason"), reason);
    setAttr(cells[2], "title", reason || null);
    setText(cells[3], String(run.attempt ?? 1));
    const started = cells[4].firstChild;
    // The start is usually the slot's own day: then its time alone says it.
    const sameDay = slot && run.startedAt && formatDay(slot, zone) === formatDay(run.startedAt, zone);
    setText(started, run.startedAt ? (sameDay ? formatTime(run.startedAt, zone) : formatDateTime(run.startedAt, zone)) : "—");
    setAttr(started, "title", run.startedAt ? formatDateTime(run.startedAt, zone) : null);
    setAttr(started, "datetime", run.startedAt || null);
    let duration = formatDuration(run.durationMs);
    if ((run.durationMs === null || run.durationMs === undefined) && run.status === "running" && toDate(run.startedAt)) {
      duration = `${formatDuration(Date.now() - toDate(run.startedAt).getTime())}…`;
    }
    setText(cells[5], duration);
    setText(cells[6], run.worker || "—");
    setAttr(cells[6], "title", run.worker || null);
    const message = String(run.errorMessage ?? "").trim();
    setText(cells[7].querySelector(".run-error"), firstLine(message));
    // Everything else (traceback, the target's output) behind a disclosure.
    const hasOutput = run.output !== null && run.output !== undefined
      && !(typeof run.output === "object" && !Object.keys(run.output).length);
    const output = hasOutput ? (typeof run.output === "string" ? run.output : JSON.stringify(run.output, null, 2)) : "";
    const extra = [message.includes("\n") ? message : "", output].filter(Boolean).join("\n\n");
    const details = cells[7].querySelector("details");
    show(details, Boolean(extra));
    setText(details.querySelector("summary"), message.includes("\n") ? t("history.more") : t("history.output"));
    setText(details.querySelector("pre"), extra);
    const logs = cells[7].querySelector(".run-logs");
    show(logs, Boolean(this.job.spec?.jobTemplate));
    logs.dataset.runId = run.runId;
    setText(logs.querySelector("summary"), t("history.logs"));
  }

  async loadLogs(details, runId) {
    const pre = details.querySelector("pre");
    setText(pre, t("history.logsLoading"));
    try {
      const logs = await api.runLogs(this.job.id, runId);
      const text = logs.map((log) => `==> ${log.job}/${log.pod}/${log.container} (${log.phase}) <==\n${log.text}`);
      setText(pre, text.length ? text.join("\n") : t("history.logsNone"));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) this.onAuthError(error);
      else setText(pre, error.message);
    }
  }
}
