// The create / edit dialog. Problems are explained next to their field before anything is
// saved: the schedule is previewed (words, next fire times or the error) while typing, and a 400
// from the API is spread over the fields it names (`spec.schedule`, `spec.timeZone`, `name`…).

import { ApiError, api } from "./api.js";
import { openDialog } from "./dialogs.js";
import { h, setAttr, setText, show, toggleIdRef } from "./dom.js";
import { formatDateTime, getLang, onLangChange, t } from "./i18n.js";
import { formFromJob, formToCron } from "./schedule-form.js";
import { toast } from "./toasts.js";

const DEFAULT_ZONE = "America/Sao_Paulo";
const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const PREVIEW_DELAY_MS = 300;
const PREVIEW_COUNT = 3;

/** Which control shows an error for an API field path (`spec.` is optional). */
const FIELD_CONTROLS = {
  name: "f-name",
  "metadata.name": "f-name",
  namespace: "f-namespace",
  "metadata.namespace": "f-namespace",
  displayName: "f-displayName",
  description: "f-description",
  category: "f-category",
  target: "f-target",
  schedule: "schedule",
  timeZone: "f-timeZone",
  timeoutSeconds: "f-timeout",
  retry: "f-attempts",
  "retry.attempts": "f-attempts",
  params: "f-params",
  jitterSeconds: "f-jitter",
  startTime: "f-startTime",
  endTime: "f-endTime",
  maxRuns: "f-maxRuns",
  schedules: "f-schedules",
  exclude: "f-exclude",
  catchUpWindowSeconds: "f-catchUp",
  dstPolicy: "f-dstGap",
  concurrencyPolicy: "f-concurrency",
  suspendReason: "f-suspendReason",
};

/** Policy fields the preview checks beside the schedule; its errors land on them. */
const POLICY_CONTROLS = ["f-jitter", "f-startTime", "f-endTime", "f-maxRuns"];

function controlIdForField(field) {
  const path = String(field || "").replace(/^spec\./, "").replace(/\[\d+\]/g, "");
  if (path in FIELD_CONTROLS) return FIELD_CONTROLS[path];
  const head = path.split(".")[0];
  return FIELD_CONTROLS[head] ?? null;
}

let timeZones = null;
function allTimeZones() {
  if (!timeZones) {
    try {
      timeZones = Intl.supportedValuesOf("timeZone");
    } catch {
      timeZones = [DEFAULT_ZONE, "UTC"];
    }
    if (!timeZones.includes("UTC")) timeZones = [...timeZones, "UTC"];
  }
  return timeZones;
}

export class JobEditor {
  /**
   * @param {{onSaved: (job, created: boolean) => void, onDeleted: (job) => void,
   *          getCategories: () => string[], onAuthError: (error) => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.dialog = document.getElementById("editor");
    this.form = document.getElementById("editor-form");
    this.el = (id) => document.getElementById(id);
    this.job = null; // the job being edited (null when creating)
    this.defaults = { namespace: "default" };
    this.targets = [];
    this.previewSeq = 0;
    this.previewTimer = null;
    this.previewAbort = null;
    this.saving = false;
    this.deleteArmed = false;

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.form.addEventListener("input", (event) => this.onInput(event));
    this.form.addEventListener("change", (event) => this.onInput(event));
    for (const radio of this.form.querySelectorAll('input[name="mode"]')) {
      radio.addEventListener("change", () => this.setMode(radio.value, { focus: false }));
    }
    this.el("add-time").addEventListener("click", () => {
      const input = this.addTimeRow("");
      input.focus();
      this.schedulePreview();
    });
    this.el("editor-reload").addEventListener("click", () => this.reload());
    this.el("editor-delete").addEventListener("click", () => this.onDelete());
    onLangChange(() => {
      if (this.dialog.open) {
        this.updateTitle();
        this.relabelTimes();
        this.refreshPreview(true);
      }
    });
  }

  setDefaults({ namespace }) {
    if (namespace) this.defaults.namespace = namespace;
  }

  setTargets(targets) {
    this.targets = targets;
    this.fillDatalist("target-options", targets);
  }

  fillDatalist(id, values) {
    const list = this.el(id);
    const current = Array.from(list.options).map((o) => o.value).join("\n");
    if (current === values.join("\n")) return;
    list.replaceChildren(...values.map((value) => h("option", { value })));
  }

  // --- opening ------------------------------------------------------------------------------

  openCreate(opener) {
    this.job = null;
    this.populate(null);
    this.open(opener);
    this.el("f-name").focus();
  }

  async openEdit(job, opener) {
    this.job = job;
    this.populate(job);
    this.open(opener);
    this.el("f-displayName").focus();
    // The list may be a poll old: start from the current resource (and its generation), unless
    // the user already started typing (then a change in between is reported as a conflict).
    try {
      const fresh = await api.getJob(job.id);
      if (this.dialog.open && this.job === job && !this.form.dataset.dirty) {
        this.job = fresh;
        this.populate(fresh, { keepFocus: true });
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) this.hooks.onAuthError(error);
    }
  }

  open(opener) {
    this.fillDatalist("tz-options", allTimeZones());
    this.fillDatalist("category-options", this.hooks.getCategories());
    openDialog(this.dialog, opener, () => this.onClosed());
    this.schedulePreview(0);
  }

  onClosed() {
    clearTimeout(this.previewTimer);
    this.previewAbort?.abort();
    this.deleteArmed = false;
  }

  close() {
    this.dialog.close();
  }

  updateTitle() {
    setText(this.el("editor-title"), this.job ? t("editor.titleEdit") : t("editor.titleNew"));
    setText(this.el("editor-save"), this.saving ? t("editor.saving") : t("editor.save"));
    setText(this.el("editor-delete"), this.deleteArmed ? t("editor.deleteConfirm") : t("editor.delete"));
  }

  /** Fill every field from `job` (or with the defaults of a new job). */
  populate(job, { keepFocus = false } = {}) {
    const spec = job?.spec || {};
    delete this.form.dataset.dirty;
    this.clearErrors();
    this.hideAlert();
    this.deleteArmed = false;
    this.dialog.classList.toggle("is-create", !job);
    this.dialog.classList.toggle("is-edit", Boolean(job));
    this.updateTitle();

    this.el("f-name").value = job?.name ?? "";
    this.el("f-namespace").value = job?.namespace ?? this.defaults.namespace;
    setText(this.el("f-ident"), job ? `${job.namespace}/${job.name}` : "");
    this.el("f-displayName").value = spec.displayName ?? "";
    this.el("f-description").value = spec.description ?? "";
    this.el("f-category").value = spec.category ?? (job ? "" : "system");
    this.el("f-target").value = spec.target ?? "";
    this.el("f-timeZone").value = spec.timeZone ?? DEFAULT_ZONE;
    this.el("f-timeout").value = String(Math.round(((spec.timeoutSeconds ?? 300) / 60) * 100) / 100);
    this.el("f-attempts").value = String(spec.retry?.attempts ?? 3);
    const params = spec.params ?? {};
    this.el("f-params").value = Object.keys(params).length ? JSON.stringify(params, null, 2) : "";
    this.el("f-jitter").value = String(spec.jitterSeconds ?? 0);
    this.el("f-startTime").value = spec.startTime ?? "";
    this.el("f-endTime").value = spec.endTime ?? "";
    this.el("f-maxRuns").value = spec.maxRuns == null ? "" : String(spec.maxRuns);
    this.el("f-schedules").value = (spec.schedules ?? [])
      .map((entry) => (entry.timeZone ? `${entry.schedule} | ${entry.timeZone}` : entry.schedule)).join("\n");
    this.el("f-exclude").value = (spec.exclude ?? []).join("\n");
    this.el("f-catchUp").value = spec.catchUpWindowSeconds == null ? "" : String(spec.catchUpWindowSeconds);
    this.el("f-dstGap").value = spec.dstPolicy?.gap ?? "";
    this.el("f-dstRepeated").value = spec.dstPolicy?.repeatedHour ?? "";
    this.el("f-concurrency").value = spec.concurrencyPolicy === "Allow" ? "" : (spec.concurrencyPolicy ?? "");
    this.el("f-suspendReason").value = spec.suspendReason ?? "";
    this.el("advanced").open = Object.keys(params).length > 0 || [
      "jitterSeconds", "startTime", "endTime", "maxRuns", "catchUpWindowSeconds", "dstPolicy", "suspendReason",
    ].some((key) => Boolean(spec[key])) || (spec.concurrencyPolicy ?? "Allow") !== "Allow" || Boolean(spec.schedules?.length || spec.exclude?.length);

    const form = formFromJob(job);
    const focusedIndex = keepFocus ? this.focusedTimeIndex() : -1;
    this.el("times-list").replaceChildren();
    for (const time of form.times) this.addTimeRow(time);
    if (focusedIndex >= 0) this.timeInputs()[focusedIndex]?.focus();
    this.el("f-interval").value = String(form.intervalValue);
    this.el("f-interval-unit").value = form.intervalUnit;
    this.el("f-cron").value = form.cron;
    this.previousMode = null;
    this.setMode(form.mode, { focus: false });
    this.lastPreviewKey = null;
    this.schedulePreview(0);
  }

  // --- schedule modes -----------------------------------------------------------------------

  setMode(mode, { focus }) {
    for (const radio of this.form.querySelectorAll('input[name="mode"]')) radio.checked = radio.value === mode;
    for (const panel of this.form.querySelectorAll(".mode-panel")) show(panel, panel.dataset.mode === mode);
    this.mode = mode;
    if (mode === "cron" && this.previousMode && !this.el("f-cron").value.trim()) {
      // Start cron mode from what the other mode meant, so switching is never a dead end.
      const other = formToCron(this.readScheduleForm(this.previousMode));
      if (other.cron) this.el("f-cron").value = other.cron;
    }
    this.previousMode = mode;
    if (focus) this.form.querySelector(`.mode-panel[data-mode="${mode}"] input`)?.focus();
    this.schedulePreview();
  }

  timeInputs() {
    return Array.from(this.el("times-list").querySelectorAll('input[type="time"]'));
  }

  focusedTimeIndex() {
    return this.timeInputs().indexOf(document.activeElement);
  }

  addTimeRow(value) {
    const input = h("input", { type: "time", class: "time-input", value, required: true });
    input.value = value;
    const remove = h("button", { type: "button", class: "icon-btn icon-btn-small" }, "×");
    const row = h("li", { class: "time-row" }, input, remove);
    remove.addEventListener("click", () => {
      const inputs = this.timeInputs();
      const index = inputs.indexOf(input);
      row.remove();
      this.relabelTimes();
      const rest = this.timeInputs();
      (rest[Math.min(index, rest.length - 1)] || this.el("add-time")).focus();
      this.markDirty();
      this.schedulePreview();
    });
    this.el("times-list").append(row);
    this.relabelTimes();
    return input;
  }

  relabelTimes() {
    const rows = Array.from(this.el("times-list").children);
    rows.forEach((row, index) => {
      const [input, remove] = row.children;
      setAttr(input, "aria-label", t("editor.timeN", { n: index + 1 }));
      setAttr(remove, "aria-label", t("editor.removeTime", { n: index + 1 }));
      remove.disabled = rows.length === 1;
    });
  }

  readScheduleForm(mode = this.mode) {
    return {
      mode,
      times: this.timeInputs().map((input) => input.value),
      intervalValue: this.el("f-interval").value,
      intervalUnit: this.el("f-interval-unit").value,
      cron: this.el("f-cron").value,
    };
  }

  /** The cron expression of the current mode, or an i18n key explaining why there is none. */
  currentCron() {
    const result = formToCron(this.readScheduleForm());
    if (result.cron) return result;
    const keys = {
      timesEmpty: "editor.errTimesEmpty",
      timeInvalid: "editor.errTimeInvalid",
      timesMinutes: "editor.errTimesMinutes",
      interval: "editor.errInterval",
      required: "editor.errRequired",
    };
    return { error: t(keys[result.error] || "editor.errRequired") };
  }

  scheduleControls() {
    switch (this.mode) {
      case "times":
        return this.timeInputs();
      case "interval":
        return [this.el("f-interval")];
      default:
        return [this.el("f-cron")];
    }
  }

  // --- live checking ------------------------------------------------------------------------

  markDirty() {
    this.form.dataset.dirty = "1";
  }

  onInput(event) {
    const target = event.target;
    if (!(target instanceof HTMLElement)) return;
    this.markDirty();
    if (target.closest("#schedule-section")) {
      if (target.id === "f-timeZone") this.setFieldError("f-timeZone", "");
      this.schedulePreview();
      return;
    }
    // The next fire times move with the jitter.
    if (["f-jitter", "f-startTime", "f-endTime", "f-maxRuns"].includes(target.id)) this.schedulePreview();
    // Typing in a field clears its stale error.
    if (target.id && target.getAttribute("aria-invalid") === "true") this.setFieldError(target.id, "");
  }

  schedulePreview(delay = PREVIEW_DELAY_MS) {
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => this.refreshPreview(false), delay);
  }

  /** Show the schedule in words and its next fire times, or why it is wrong, under the field. */
  async refreshPreview(force) {
    if (!this.dialog.open) return;
    const zone = this.el("f-timeZone").value.trim() || DEFAULT_ZONE;
    const result = this.currentCron();
    const policies = this.previewPolicies();
    const key = JSON.stringify([result, zone, getLang(), policies]);
    if (!force && key === this.lastPreviewKey) return;
    this.lastPreviewKey = key;
    const seq = ++this.previewSeq;
    this.previewAbort?.abort();

    if (result.error) {
      this.showPreview(null);
      this.setScheduleError(result.error);
      return;
    }
    show(this.el("preview-checking"), this.el("schedule-preview").hidden);
    this.previewAbort = new AbortController();
    let outcome;
    try {
      outcome = parsePreview(await api.previewSchedule(result.cron, zone, this.previewAbort.signal, policies));
    } catch (error) {
      if (error?.name === "AbortError") return;
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) {
        this.hooks.onAuthError(error);
        return;
      }
      if (error.status === 400 || error.status === 422) {
        const field = error.fields[0]?.field || "spec.schedule";
        outcome = { error: error.fields[0]?.message || error.message, field };
      } else {
        outcome = null; // preview unavailable: say nothing rather than something wrong
      }
    }
    if (seq !== this.previewSeq || !this.dialog.open) return;
    show(this.el("preview-checking"), false);
    if (!outcome) {
      this.showPreview(null);
      this.setScheduleError("");
      return;
    }
    for (const id of POLICY_CONTROLS) this.setFieldError(id, "");
    if (outcome.error) {
      this.showPreview(null);
      const control = controlIdForField(outcome.field);
      if (POLICY_CONTROLS.includes(control)) {
        this.setScheduleError("");
        this.setFieldError(control, outcome.error);
      } else if (control === "f-timeZone") {
        this.setScheduleError("");
        this.setFieldError("f-timeZone", outcome.error);
      } else {
        this.setFieldError("f-timeZone", "");
        this.setScheduleError(outcome.error);
      }
      return;
    }
    this.setScheduleError("");
    this.setFieldError("f-timeZone", "");
    this.showPreview({ ...outcome, cron: result.cron, zone });
  }

  /** The schedule policies that move fire times, as the preview endpoint takes them. */
  previewPolicies() {
    const policies = {};
    const jitterSeconds = Number(this.el("f-jitter").value.trim() || "0");
    if (Number.isInteger(jitterSeconds) && jitterSeconds > 0 && jitterSeconds <= 86400) {
      Object.assign(policies, { jitterSeconds, uid: this.job?.uid ?? "" });
    }
    for (const key of ["startTime", "endTime"]) {
      const text = this.el(`f-${key}`).value.trim();
      if (text) policies[key] = text;
    }
    const maxRuns = Number(this.el("f-maxRuns").value.trim() || "0");
    if (Number.isInteger(maxRuns) && maxRuns > 0 && maxRuns <= 10000) policies.maxRuns = maxRuns;
    return policies;
  }

  showPreview(preview) {
    const box = this.el("schedule-preview");
    show(this.el("preview-checking"), false);
    if (!preview) {
      show(box, false);
      return;
    }
    const lang = getLang();
    const words = typeof preview.text === "string" ? preview.text : preview.text?.[lang] || preview.text?.en || "";
    setText(this.el("preview-words"), words || preview.cron);
    setText(this.el("preview-cron"), t("editor.cronResult", { cron: preview.cron }));
    show(this.el("preview-cron"), this.mode !== "cron");
    const next = preview.next.slice(0, PREVIEW_COUNT).map((iso) => formatDateTime(iso, preview.zone));
    setText(this.el("preview-next"), next.join(" · "));
    show(this.el("preview-next").parentElement, next.length > 0);
    show(box, true);
  }

  setScheduleError(message) {
    const error = this.el("f-schedule-error");
    setText(error, message);
    show(error, Boolean(message));
    const all = [...this.timeInputs(), this.el("f-interval"), this.el("f-cron")];
    const current = new Set(this.scheduleControls());
    for (const control of all) {
      const on = Boolean(message) && current.has(control);
      setAttr(control, "aria-invalid", on ? "true" : null);
      toggleIdRef(control, "aria-describedby", "f-schedule-error", on);
    }
  }

  // --- field errors -------------------------------------------------------------------------

  setFieldError(controlId, message) {
    if (controlId === "schedule") {
      this.setScheduleError(message);
      return;
    }
    const control = this.el(controlId);
    const error = this.el(`${controlId}-error`);
    if (!control || !error) return;
    setText(error, message);
    show(error, Boolean(message));
    setAttr(control, "aria-invalid", message ? "true" : null);
    toggleIdRef(control, "aria-describedby", error.id, Boolean(message));
  }

  clearErrors() {
    for (const error of this.form.querySelectorAll(".field-error")) {
      const controlId = error.id.replace(/-error$/, "");
      if (controlId === "f-schedule") this.setScheduleError("");
      else this.setFieldError(controlId, "");
    }
  }

  showAlert(message, { reload = false } = {}) {
    setText(this.el("editor-alert-text"), message);
    show(this.el("editor-reload"), reload);
    show(this.el("editor-alert"), true);
  }

  hideAlert() {
    show(this.el("editor-alert"), false);
  }

  focusFirstInvalid() {
    const first = this.form.querySelector('[aria-invalid="true"]');
    if (first) {
      first.closest("details")?.setAttribute("open", "");
      first.focus();
    }
  }

  /** Check what can be checked here; returns the spec or null (with the errors shown). */
  validate() {
    this.clearErrors();
    this.hideAlert();
    const errors = [];
    const fail = (id, message) => errors.push([id, message]);
    const creating = !this.job;
    const value = (id) => this.el(id).value.trim();

    if (creating) {
      const name = value("f-name");
      if (!name) fail("f-name", t("editor.errRequired"));
      else if (name.length > 63 || !NAME_PATTERN.test(name)) fail("f-name", t("editor.errName"));
      if (!value("f-namespace")) fail("f-namespace", t("editor.errRequired"));
    }
    if (!value("f-target")) fail("f-target", t("editor.errRequired"));
    const schedule = this.currentCron();
    if (schedule.error) fail("schedule", schedule.error);
    if (!value("f-timeZone")) fail("f-timeZone", t("editor.errRequired"));

    const timeoutMinutes = Number(value("f-timeout"));
    const timeoutSeconds = Math.round(timeoutMinutes * 60);
    if (!value("f-timeout") || !Number.isFinite(timeoutMinutes) || timeoutSeconds < 1 || timeoutSeconds > 86400) {
      fail("f-timeout", t("editor.errNumber", { min: 1, max: 1440 }));
    }
    const attempts = Number(value("f-attempts"));
    if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100) {
      fail("f-attempts", t("editor.errNumber", { min: 1, max: 100 }));
    }
    const jitterSeconds = Number(value("f-jitter") || "0");
    if (!Number.isInteger(jitterSeconds) || jitterSeconds < 0 || jitterSeconds > 86400) {
      fail("f-jitter", t("editor.errNumber", { min: 0, max: 86400 }));
    }
    const maxRuns = value("f-maxRuns") ? Number(value("f-maxRuns")) : null;
    if (maxRuns !== null && (!Number.isInteger(maxRuns) || maxRuns < 1 || maxRuns > 10000)) {
      fail("f-maxRuns", t("editor.errNumber", { min: 1, max: 10000 }));
    }
    if (maxRuns !== null && !value("f-startTime")) fail("f-startTime", t("editor.errRequired"));
    const catchUp = value("f-catchUp") ? Number(value("f-catchUp")) : null;
    if (catchUp !== null && (!Number.isInteger(catchUp) || catchUp < 1)) {
      fail("f-catchUp", t("editor.errNumber", { min: 1, max: 86400 * 365 }));
    }
    const lines = (id) => value(id).split("\n").map((line) => line.trim()).filter(Boolean);
    // One schedule a line, `cron | Time/Zone` or just `cron` (the job's zone).
    const schedules = lines("f-schedules").map((line) => {
      const [cron, zone] = line.split("|").map((part) => part.trim());
      return zone ? { schedule: cron, timeZone: zone } : { schedule: cron };
    });
    const dstPolicy = {};
    if (value("f-dstGap")) dstPolicy.gap = value("f-dstGap");
    if (value("f-dstRepeated")) dstPolicy.repeatedHour = value("f-dstRepeated");
    let params = {};
    if (value("f-params")) {
      try {
        params = JSON.parse(value("f-params"));
        if (params === null || typeof params !== "object" || Array.isArray(params)) {
          fail("f-params", t("editor.errJsonObject"));
        }
      } catch (exc) {
        fail("f-params", t("editor.errJson", { message: exc.message }));
      }
    }
    if (errors.length) {
      for (const [id, message] of errors) this.setFieldError(id, message);
      this.showAlert(t("editor.errSummary"));
      this.focusFirstInvalid();
      return null;
    }

    const text = (id) => value(id) || (creating ? undefined : null); // null removes on PATCH
    return {
      displayName: text("f-displayName"),
      description: text("f-description"),
      category: value("f-category") || (creating ? undefined : null),
      target: value("f-target"),
      schedule: schedule.cron,
      timeZone: value("f-timeZone"),
      timeoutSeconds,
      retry: { attempts },
      params: creating && !value("f-params") ? undefined : params,
      jitterSeconds: creating && !jitterSeconds ? undefined : jitterSeconds,
      // Checked by the API (RFC 3339 with an offset); its 400 lands on the field.
      startTime: text("f-startTime"),
      endTime: text("f-endTime"),
      maxRuns: maxRuns ?? (creating ? undefined : null),
      catchUpWindowSeconds: catchUp ?? (creating ? undefined : null),
      schedules: creating && !schedules.length ? undefined : schedules,
      exclude: creating && !lines("f-exclude").length ? undefined : lines("f-exclude"),
      // A merge patch would keep a field left out; null clears the whole choice first.
      dstPolicy: Object.keys(dstPolicy).length ? dstPolicy : (creating ? undefined : null),
      suspendReason: text("f-suspendReason"),
      concurrencyPolicy: text("f-concurrency"), // empty: Allow, the default
    };
  }

  // --- saving -------------------------------------------------------------------------------

  async save() {
    if (this.saving) return;
    const spec = this.validate();
    if (!spec) return;
    this.setSaving(true);
    const creating = !this.job;
    try {
      let saved;
      if (creating) {
        saved = await api.createJob({
          namespace: this.el("f-namespace").value.trim(),
          name: this.el("f-name").value.trim(),
          enabled: true,
          spec: dropUndefined(spec),
        });
      } else {
        const body = { spec: dropUndefined(spec) };
        // The spec version this form was filled from: if someone else changed the spec since,
        // the API answers 409 instead of overwriting their change. (Status updates bump
        // resourceVersion every few seconds, so that alone would make every save conflict.)
        if (this.job.generation !== undefined) body.generation = this.job.generation;
        else if (this.job.resourceVersion) body.resourceVersion = this.job.resourceVersion;
        saved = await api.patchJob(this.job.id, body);
      }
      this.setSaving(false);
      const fallbackName = this.el("f-displayName").value.trim() || this.el("f-name").value.trim() || this.job?.name;
      toast(t(creating ? "toast.created" : "toast.saved", { name: saved?.spec?.displayName || saved?.name || fallbackName }), {
        kind: "success",
      });
      this.close();
      this.hooks.onSaved(saved, creating);
    } catch (error) {
      this.setSaving(false);
      if (!(error instanceof ApiError)) throw error;
      this.showApiError(error, creating);
    }
  }

  showApiError(error, creating) {
    if (error.status === 401) {
      this.hooks.onAuthError(error);
      return;
    }
    if (error.status === 400 || error.status === 422) {
      let unplaced = [];
      for (const item of error.fields) {
        const controlId = controlIdForField(item.field);
        if (controlId && (controlId !== "f-name" && controlId !== "f-namespace" || creating)) {
          this.setFieldError(controlId, item.message);
        } else {
          unplaced.push(`${item.field}: ${item.message}`);
        }
      }
      if (!error.fields.length) unplaced = [error.message];
      this.showAlert(unplaced.length ? unplaced.join("\n") : t("editor.errSummary"));
      this.focusFirstInvalid();
      return;
    }
    if (error.status === 409) {
      if (creating) {
        this.setFieldError("f-name", error.message || t("editor.nameTaken"));
        this.showAlert(t("editor.nameTaken"));
        this.focusFirstInvalid();
      } else {
        this.showAlert(t("editor.conflict"), { reload: true });
        this.el("editor-reload").focus();
      }
      return;
    }
    if (error.status === 404 && !creating) {
      this.showAlert(t("editor.notFound"));
      return;
    }
    const message = error.isNetwork ? t("toast.network")
      : error.status === 403 ? t("toast.forbidden", { message: error.message })
      : t("toast.error", { message: error.message });
    this.showAlert(message);
    if (error.status === 403) toast(message, { kind: "error" });
  }

  setSaving(saving) {
    this.saving = saving;
    const button = this.el("editor-save");
    // Not `disabled`: the button may have focus, and disabling it would drop it.
    setAttr(button, "aria-disabled", saving ? "true" : null);
    setAttr(button, "aria-busy", saving ? "true" : null);
    this.updateTitle();
  }

  async reload() {
    if (!this.job) return;
    try {
      const fresh = await api.getJob(this.job.id);
      this.job = fresh;
      this.populate(fresh);
      this.el("f-displayName").focus();
    } catch (error) {
      if (error instanceof ApiError) this.showApiError(error, false);
    }
  }

  async onDelete() {
    if (!this.job) return;
    if (!this.deleteArmed) {
      this.deleteArmed = true;
      this.updateTitle();
      return;
    }
    const job = this.job;
    try {
      await api.deleteJob(job.id);
      toast(t("toast.deleted", { name: job.spec?.displayName || job.name }), { kind: "success" });
      this.close();
      this.hooks.onDeleted(job);
    } catch (error) {
      this.deleteArmed = false;
      this.updateTitle();
      if (error instanceof ApiError) this.showApiError(error, false);
    }
  }
}

function dropUndefined(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}

/**
 * The preview answer: `{valid: true, text: {"pt-BR", en}, nextRuns: [iso…]}` or
 * `{valid: false, error: "why", errorField: "spec.schedule" | "spec.timeZone"}`.
 */
export function parsePreview(body) {
  if (!body || typeof body !== "object") return null;
  const error = body.error;
  if (body.valid === false || error) {
    const message = typeof error === "string" ? error : error?.message || body.message || "invalid schedule";
    const field = body.errorField || (typeof error === "object" && (error.field || error.fields?.[0]?.field))
      || body.field || "spec.schedule";
    return { error: message, field };
  }
  const text = body.text ?? body.scheduleText ?? body.words ?? body.description ?? "";
  const next = body.next ?? body.nextRuns ?? body.nextRunTimes ?? body.fireTimes ?? body.times ?? [];
  return { text, next: Array.isArray(next) ? next : [] };
}
