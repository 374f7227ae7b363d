// The backfill dialog: run the slots of a past window (`POST /api/jobs/{id}/backfill`,
// docs/schedule-policies.md). While the dates change, a dry run of the same call lists the slots
// that will run, or puts the server's reason beside the field it is about; submitting asks for
// real. The times typed are the browser's local time, sent as instants (UTC).

import { ApiError, api } from "./api.js";
import { openDialog } from "./dialogs.js";
import { h, setAttr, setText, show, toggleIdRef } from "./dom.js";
import { formatDateTime, onLangChange, t } from "./i18n.js";
import { jobName, jobZone } from "./jobs.js";
import { toast, toastError } from "./toasts.js";

const FIELDS = { from: "b-from", to: "b-to", sequential: "b-sequential" };
const PREVIEW_DELAY_MS = 300;

/** `datetime-local` value (browser local time) as an RFC 3339 instant, or "" when empty or invalid. */
export function instantOf(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

export class BackfillView {
  constructor({ onAuthError, onRequested }) {
    this.onAuthError = onAuthError;
    this.onRequested = onRequested;
    this.dialog = document.getElementById("backfill");
    this.form = document.getElementById("backfill-form");
    this.submit = document.getElementById("backfill-submit");
    this.job = null;
    this.seq = 0;
    this.timer = null;
    this.abort = null;
    this.lastPreview = null;
    for (const id of Object.values(FIELDS)) {
      document.getElementById(id).addEventListener("input", () => this.schedulePreview());
      document.getElementById(id).addEventListener("change", () => this.schedulePreview());
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    onLangChange(() => this.isOpen && this.render());
  }

  get isOpen() {
    return this.dialog.open;
  }

  open(job, opener) {
    this.job = job;
    this.form.reset();
    this.lastPreview = null;
    this.clearErrors();
    show(document.getElementById("backfill-alert"), false);
    this.render();
    openDialog(this.dialog, opener, () => {
      clearTimeout(this.timer);
      this.abort?.abort();
      this.job = null;
    });
  }

  render() {
    if (!this.job) return;
    setText(document.getElementById("backfill-sub"), jobName(this.job));
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    setText(document.getElementById("b-zone-hint"), t("backfill.zone", { zone, jobZone: jobZone(this.job) }));
    this.showSlots(this.lastPreview);
  }

  body() {
    return {
      from: instantOf(document.getElementById(FIELDS.from).value),
      to: instantOf(document.getElementById(FIELDS.to).value),
      sequential: document.getElementById(FIELDS.sequential).checked,
    };
  }

  schedulePreview() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.preview(), PREVIEW_DELAY_MS);
  }

  async preview() {
    if (!this.job || !this.isOpen) return;
    const body = this.body();
    const seq = ++this.seq;
    this.abort?.abort();
    if (!body.from || !body.to) {
      this.lastPreview = null;
      this.showSlots(null);
      return;
    }
    this.abort = new AbortController();
    try {
      const answer = await api.backfillJob(this.job.id, body, { dryRun: true, signal: this.abort.signal });
      if (seq !== this.seq) return;
      this.clearErrors();
      this.lastPreview = answer;
      this.showSlots(answer);
    } catch (error) {
      if (error?.name === "AbortError" || seq !== this.seq) return;
      this.lastPreview = null;
      this.showSlots(null, true);
      this.showProblem(error);
    }
  }

  showSlots(answer, refused = false) {
    const list = document.getElementById("b-slots");
    const summary = document.getElementById("b-slots-summary");
    if (!answer) {
      list.replaceChildren();
      setText(summary, t(refused ? "backfill.slotsRefused" : "backfill.slotsAsk"));
      return;
    }
    const zone = jobZone(this.job);
    const times = answer.slotTimes || [];
    list.replaceChildren(...times.map((iso) => h("li", {}, h("time", { datetime: iso }, formatDateTime(iso, zone)))));
    if (!answer.slots) setText(summary, t("backfill.slotsNone"));
    else if (answer.slots > times.length) setText(summary, t("backfill.slotsMore", { count: answer.slots, shown: times.length }));
    else setText(summary, t("backfill.slotsCount", { count: answer.slots }));
  }

  async send() {
    if (!this.job || this.submit.getAttribute("aria-busy") === "true") return;
    const body = this.body();
    this.clearErrors();
    const missing = Object.entries({ from: body.from, to: body.to }).filter(([, value]) => !value);
    for (const [field] of missing) this.setFieldError(FIELDS[field], t("backfill.required"));
    if (missing.length) {
      document.getElementById(FIELDS[missing[0][0]]).focus();
      return;
    }
    setAttr(this.submit, "aria-busy", "true");
    const job = this.job;
    try {
      const answer = await api.backfillJob(job.id, body);
      toast(t("toast.backfillRequested", { count: answer.slots, name: jobName(job) }), { kind: "success" });
      this.dialog.close();
      this.onRequested?.();
    } catch (error) {
      this.showProblem(error, true);
    } finally {
      setAttr(this.submit, "aria-busy", null);
    }
  }

  /** The API's reason beside its field when it names one, else above the form (or a toast). */
  showProblem(error, focus = false) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status === 401) {
      this.onAuthError();
      return;
    }
    const alert = document.getElementById("backfill-alert");
    let placed = false;
    for (const problem of error.fields) {
      const control = FIELDS[problem.field];
      if (!control) continue;
      this.setFieldError(control, problem.message);
      if (focus && !placed) document.getElementById(control).focus();
      placed = true;
    }
    if (placed) {
      show(alert, false);
    } else if (error.status === 400) {
      setText(document.getElementById("backfill-alert-text"), error.message);
      show(alert, true);
    } else {
      toastError(error);
    }
  }

  setFieldError(controlId, message) {
    const control = document.getElementById(controlId);
    const error = document.getElementById(`${controlId}-error`);
    setText(error, message);
    show(error, Boolean(message));
    setAttr(control, "aria-invalid", message ? "true" : null);
    toggleIdRef(control, "aria-describedby", error.id, Boolean(message));
  }

  clearErrors() {
    for (const id of Object.values(FIELDS)) this.setFieldError(id, "");
    show(document.getElementById("backfill-alert"), false);
  }
}
