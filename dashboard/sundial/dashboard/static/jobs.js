// The list of jobs: one card per ScheduledJob, like the original /agendamentos sketch, plus the
// category filter. Cards are created once per job and updated in place on every poll.

import { categoryHue, h, icon, reconcile, setAttr, setText, show, uid } from "./dom.js";
import { formatDateTime, formatDuration, formatRelative, formatWhen, getLang, statusLabel, t } from "./i18n.js";

const STATUS_ICONS = {
  success: "✓",
  succeeded: "✓",
  failed: "✗",
  timed_out: "⏱",
  running: "●",
  cancelled: "⊘",
  skipped: "↷",
  missed: "!",
};

export function statusIcon(status) {
  return STATUS_ICONS[status] ?? "•";
}

/** A status pill: icon plus words, so the colour is never the only signal. */
export function statusBadge(status) {
  const badge = h("span", { class: "status" }, h("span", { class: "status-icon", "aria-hidden": "true" }), h("span", { class: "status-text" }));
  updateStatusBadge(badge, status);
  return badge;
}

export function updateStatusBadge(badge, status) {
  setAttr(badge, "data-status", status || "none");
  setText(badge.querySelector(".status-icon"), statusIcon(status));
  setText(badge.querySelector(".status-text"), statusLabel(status));
}

export function jobName(job) {
  return job.spec?.displayName || job.name;
}

export function jobZone(job) {
  return job.spec?.timeZone || "America/Sao_Paulo";
}

function activeCount(status) {
  const active = status?.active;
  if (Array.isArray(active)) return active.length;
  return Number(active) || 0;
}

export class JobList {
  /**
   * @param {{onToggle: (job, enabled: boolean, input: HTMLInputElement) => void,
   *          onEdit: (job, button) => void, onHistory: (job, button) => void, onRunNow: (job, button) => void}} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.list = document.getElementById("job-list");
    this.filters = document.getElementById("filters");
    this.chips = document.getElementById("filter-chips");
    this.empty = document.getElementById("jobs-empty");
    this.count = document.getElementById("jobs-count");
    this.loading = document.getElementById("jobs-loading");
    this.jobs = null;
    this.hidden = new Set(); // categories unticked by the user; new categories show by default
    this.readOnly = false;
    this.busy = new Set(); // job ids with a toggle request in flight
  }

  setReadOnly(readOnly) {
    this.readOnly = readOnly;
    this.render();
  }

  setJobs(jobs) {
    // By the name people read, then by namespace/name so the order is stable.
    const label = (job) => jobName(job).toLocaleLowerCase();
    this.jobs = [...jobs].sort(
      (a, b) => label(a).localeCompare(label(b)) || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name),
    );
    this.render();
  }

  get categories() {
    const set = new Set((this.jobs || []).map((job) => job.spec?.category || "system"));
    return Array.from(set).sort();
  }

  render() {
    if (this.jobs === null) return;
    show(this.loading, false);
    this.renderFilters();
    const visible = this.jobs.filter((job) => !this.hidden.has(job.spec?.category || "system"));
    reconcile(this.list, visible, (job) => job.id, (job) => this.createCard(job), (node, job) => this.updateCard(node, job));
    const none = this.jobs.length === 0;
    show(this.empty, visible.length === 0);
    setText(this.empty.querySelector(".empty-title"), none ? t("jobs.empty") : t("jobs.emptyFiltered"));
    setText(this.empty.querySelector(".empty-hint"), none && !this.readOnly ? t("jobs.emptyHint") : "");
    setText(this.count, none ? "" : t("jobs.count", { shown: visible.length, total: this.jobs.length }));
  }

  // --- category filter -----------------------------------------------------------------------

  renderFilters() {
    const categories = this.categories;
    show(this.filters, categories.length > 0);
    const items = ["*", ...categories];
    reconcile(
      this.chips,
      items,
      (item) => item,
      (item) => {
        const input = h("input", { type: "checkbox", class: "chip-input", value: item });
        input.addEventListener("change", () => this.onFilterChange(item, input.checked));
        const label = h("label", { class: "chip" }, input, h("span", { class: "chip-text" }));
        if (item !== "*") label.style.setProperty("--hue", categoryHue(item));
        else label.classList.add("chip-all");
        return label;
      },
      (label, item) => {
        const input = label.querySelector("input");
        const text = item === "*" ? t("jobs.filterAll") : item.toUpperCase();
        setText(label.querySelector(".chip-text"), text);
        if (item === "*") {
          const shown = categories.filter((c) => !this.hidden.has(c)).length;
          input.checked = shown === categories.length;
          input.indeterminate = shown > 0 && shown < categories.length;
        } else {
          input.checked = !this.hidden.has(item);
        }
      },
    );
  }

  onFilterChange(item, checked) {
    if (item === "*") {
      if (checked) this.hidden.clear();
      else for (const c of this.categories) this.hidden.add(c);
    } else if (checked) {
      this.hidden.delete(item);
    } else {
      this.hidden.add(item);
    }
    this.render();
  }

  // --- cards ---------------------------------------------------------------------------------

  createCard(job) {
    const titleId = uid("job-title");
    const stateId = uid("job-state");
    const toggle = h("input", {
      type: "checkbox",
      role: "switch",
      class: "switch write-toggle",
      "aria-labelledby": titleId,
      "aria-describedby": stateId,
    });
    toggle.addEventListener("change", () => this.handlers.onToggle(toggle.job, toggle.checked, toggle));

    const editButton = h("button", { type: "button", class: "btn btn-small write-control", "data-action": "edit" },
      h("span", { "aria-hidden": "true" }, "✎"), " ", h("span", { class: "label" }));
    const historyButton = h("button", { type: "button", class: "btn btn-small", "data-action": "history" },
      h("span", { "aria-hidden": "true" }, "☰"), " ", h("span", { class: "label" }));
    const runButton = h("button", { type: "button", class: "btn btn-small btn-run write-control", "data-action": "run" },
      h("span", { "aria-hidden": "true" }, "▶"), " ", h("span", { class: "label" }));
    const backfillButton = h("button", { type: "button", class: "btn btn-small write-control", "data-action": "backfill" },
      h("span", { "aria-hidden": "true" }, "⟲"), " ", h("span", { class: "label" }));
    editButton.addEventListener("click", () => this.handlers.onEdit(card.job, editButton));
    historyButton.addEventListener("click", () => this.handlers.onHistory(card.job, historyButton));
    runButton.addEventListener("click", () => this.handlers.onRunNow(card.job, runButton));
    backfillButton.addEventListener("click", () => this.handlers.onBackfill(card.job, backfillButton));

    const card = h(
      "li",
      { class: "job-card card" },
      h(
        "article",
        { "aria-labelledby": titleId },
        h(
          "div",
          { class: "job-head" },
          h("div", { class: "switch-wrap" }, toggle),
          h(
            "div",
            { class: "job-titles" },
            h("h2", { class: "job-title", id: titleId }),
            h("p", { class: "job-sub" },
              h("code", { class: "job-target" }),
              h("span", { class: "sep", "aria-hidden": "true" }, "·"),
              h("span", { class: "job-ns" })),
            h("p", { class: "job-desc" }),
          ),
          h("div", { class: "job-badges" },
            h("span", { class: "badge badge-cat" }),
            h("span", { class: "badge badge-state", id: stateId })),
        ),
        h(
          "dl",
          { class: "job-facts" },
          h("div", { class: "fact fact-schedule" },
            h("dt", { class: "dt-schedule" }),
            h("dd", {}, icon("clock"), h("span", { class: "schedule-text" }), " ", h("span", { class: "tz muted" }))),
          h("div", { class: "fact fact-next" },
            h("dt", { class: "dt-next" }),
            h("dd", {}, h("time", { class: "next-time" }), h("span", { class: "next-rel muted" }))),
          h("div", { class: "fact fact-last" },
            h("dt", { class: "dt-last" }),
            h("dd", {}, h("span", { class: "last-status" }), h("span", { class: "last-detail" }))),
        ),
        h("p", { class: "job-running" }, h("span", { class: "pulse", "aria-hidden": "true" }), h("span", { class: "running-text" })),
        h("p", { class: "job-problem" }, h("span", { "aria-hidden": "true" }, "⚠ "), h("strong", { class: "problem-reason" }), " ",
          h("span", { class: "problem-message" })),
        h("div", { class: "job-actions" }, editButton, historyButton, backfillButton, runButton),
      ),
    );
    card.refs = {
      toggle, editButton, historyButton, backfillButton, runButton,
      title: card.querySelector(".job-title"),
      target: card.querySelector(".job-target"),
      ns: card.querySelector(".job-ns"),
      desc: card.querySelector(".job-desc"),
      cat: card.querySelector(".badge-cat"),
      state: card.querySelector(".badge-state"),
      dtSchedule: card.querySelector(".dt-schedule"),
      scheduleText: card.querySelector(".schedule-text"),
      tz: card.querySelector(".tz"),
      dtNext: card.querySelector(".dt-next"),
      nextTime: card.querySelector(".next-time"),
      nextRel: card.querySelector(".next-rel"),
      dtLast: card.querySelector(".dt-last"),
      lastStatus: card.querySelector(".last-status"),
      lastDetail: card.querySelector(".last-detail"),
      running: card.querySelector(".job-running"),
      runningText: card.querySelector(".running-text"),
      problem: card.querySelector(".job-problem"),
      problemReason: card.querySelector(".problem-reason"),
      problemMessage: card.querySelector(".problem-message"),
    };
    return card;
  }

  updateCard(card, job) {
    card.job = job;
    const r = card.refs;
    r.toggle.job = job;
    const name = jobName(job);
    const zone = jobZone(job);
    const status = job.status || {};
    const category = job.spec?.category || "system";

    card.classList.toggle("is-disabled", !job.enabled);
    setText(r.title, name);
    setText(r.target, job.spec?.target || "");
    setText(r.ns, job.namespace);
    setAttr(r.ns, "title", t("job.namespace"));
    setAttr(r.target, "title", t("job.target"));

    setText(r.cat, category.toUpperCase());
    r.cat.style.setProperty("--hue", categoryHue(category));
    setText(r.state, job.enabled ? t("job.enabled") : t("job.disabled"));
    // Why it is paused, where the pause is shown (spec.suspendReason).
    setAttr(r.state, "title", !job.enabled && job.spec?.suspendReason ? job.spec.suspendReason : null);
    setText(r.desc, !job.enabled && job.spec?.suspendReason
      ? `${t("job.suspendReason")}: ${job.spec.suspendReason}${job.spec?.description ? ` — ${job.spec.description}` : ""}`
      : job.spec?.description || "");
    show(r.desc, Boolean(job.spec?.description || (!job.enabled && job.spec?.suspendReason)));
    r.state.classList.toggle("badge-off", !job.enabled);
    r.state.classList.toggle("sr-only", job.enabled); // "Desativado" is shown; "Ativado" only read out

    // The switch: never overwrite it while a request for it is in flight.
    if (!this.busy.has(job.id)) r.toggle.checked = Boolean(job.enabled);
    // Never `disabled` while busy: that would drop keyboard focus (aria-busy says it instead).
    r.toggle.disabled = this.readOnly;

    // Schedule in words, in the page's language.
    setText(r.dtSchedule, t("job.schedule"));
    const words = job.scheduleText?.[getLang()] || job.scheduleText?.en || job.spec?.schedule || "";
    setText(r.scheduleText, words);
    setText(r.tz, zone === "America/Sao_Paulo" ? "" : `(${zone})`);
    setAttr(r.scheduleText, "title", job.spec?.schedule || null);

    setText(r.dtNext, t("job.next"));
    if (job.enabled && status.nextRunTime) {
      setText(r.nextTime, formatWhen(status.nextRunTime, zone));
      setAttr(r.nextTime, "datetime", status.nextRunTime);
      setAttr(r.nextTime, "title", formatDateTime(status.nextRunTime, zone));
      setText(r.nextRel, ` · ${formatRelative(status.nextRunTime)}`);
    } else {
      setText(r.nextTime, t("job.noNext"));
      setAttr(r.nextTime, "datetime", null);
      setAttr(r.nextTime, "title", null);
      setText(r.nextRel, "");
    }

    setText(r.dtLast, t("job.last"));
    if (status.lastStatus || status.lastRunTime) {
      if (!r.lastStatus.firstChild) r.lastStatus.append(statusBadge(status.lastStatus));
      else updateStatusBadge(r.lastStatus.firstChild, status.lastStatus);
      const when = status.lastRunTime ? formatWhen(status.lastRunTime, zone) : "";
      const duration = status.lastDurationMs !== undefined && status.lastDurationMs !== null
        ? ` (${formatDuration(status.lastDurationMs)})` : "";
      setText(r.lastDetail, ` ${when}${duration}`);
      setAttr(r.lastDetail, "title", status.lastError || (status.lastRunTime ? formatDateTime(status.lastRunTime, zone) : null));
      card.classList.toggle("never-ran", false);
    } else {
      r.lastStatus.replaceChildren();
      setText(r.lastDetail, t("job.neverRan"));
      setAttr(r.lastDetail, "title", null);
      card.classList.toggle("never-ran", true);
    }

    const active = activeCount(status);
    show(r.running, active > 0);
    setText(r.runningText, active > 1 ? `${t("job.running")} (${active})` : t("job.running"));

    const ready = job.ready;
    const problem = ready && ready.status !== "True" && !(ready.reason === "Suspended" && !job.enabled);
    show(r.problem, Boolean(problem));
    if (problem) {
      setText(r.problemReason, `${ready.reason || t("job.problem")}:`);
      setText(r.problemMessage, ready.message || "");
    }

    setText(r.editButton.querySelector(".label"), t("job.edit"));
    setText(r.historyButton.querySelector(".label"), t("job.history"));
    setText(r.runButton.querySelector(".label"), t("job.runNow"));
    setAttr(r.editButton, "aria-label", t("job.editLabel", { name }));
    setAttr(r.historyButton, "aria-label", t("job.historyLabel", { name }));
    setAttr(r.runButton, "aria-label", t("job.runNowLabel", { name }));
    setText(r.backfillButton.querySelector(".label"), t("job.backfill"));
    setAttr(r.backfillButton, "aria-label", t("job.backfillLabel", { name }));
    show(r.editButton, !this.readOnly);
    show(r.runButton, !this.readOnly);
    show(r.backfillButton, !this.readOnly);
  }

  /** The card's element for `id`, for returning focus after a dialog. */
  cardFor(id) {
    return Array.from(this.list.children).find((node) => node.dataset.key === id) || null;
  }
}
