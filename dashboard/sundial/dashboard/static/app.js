// The /agendamentos page: signs in, polls the API every 2 s while the tab is visible and wires the
// views (job list, editor, history, queue) together.

import { ApiError, adoptTokenFromUrl, api, getToken, setToken } from "./api.js";
import { setAttr, setText, show } from "./dom.js";
import { JobEditor } from "./editor.js";
import { BackfillView } from "./backfill.js";
import { HistoryView } from "./history.js";
import { applyStatic, formatRelative, getLang, onLangChange, setLang, t } from "./i18n.js";
import { JobList, jobName } from "./jobs.js";
import { QueueView } from "./queue.js";
import { toast, toastError } from "./toasts.js";

const POLL_MS = 2000;
const RETRY_START_MS = 3000;

const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  readOnly: false,
  tab: "jobs",
  jobsById: new Map(),
  jobsByUid: new Map(),
  signedIn: false,
  lastUpdate: null,
};

let list;
let editor;
let history;
let backfill;
let queue;

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

function init() {
  adoptTokenFromUrl();
  document.documentElement.lang = getLang();
  applyStatic();
  updateLangButtons();

  list = new JobList({ onToggle, onEdit, onHistory, onRunNow, onBackfill });
  editor = new JobEditor({
    onSaved: () => pollNow(),
    onDeleted: () => pollNow(),
    getCategories: () => Array.from(new Set(["biz", "system", "maintenance", ...list.categories])).sort(),
    onAuthError: needSignIn,
  });
  history = new HistoryView({ onAuthError: needSignIn });
  backfill = new BackfillView({ onAuthError: needSignIn, onRequested: () => pollNow() });
  queue = new QueueView({
    lookupJob: (id) => state.jobsById.get(id) || state.jobsByUid.get(id) || null,
    onAuthError: needSignIn,
  });

  setupLangSwitch();
  setupTabs();
  setupSignIn();
  $("new-job").addEventListener("click", (event) => editor.openCreate(event.currentTarget));
  $("sign-out").addEventListener("click", () => {
    setToken("");
    needSignIn();
  });
  onLangChange(() => {
    updateLangButtons();
    list.render();
    renderUser();
    renderConnection();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollNow();
  });

  const initialTab = window.location.hash === "#queue" || window.location.hash === "#fila" ? "queue" : "jobs";
  selectTab(initialTab, { focus: false });
  start();
}

let startRetryMs = RETRY_START_MS;

async function start() {
  let me;
  try {
    me = await api.me();
  } catch (error) {
    if (!noteFailure(error)) return;
    setTimeout(start, startRetryMs);
    startRetryMs = Math.min(startRetryMs * 2, 30000);
    return;
  }
  startRetryMs = RETRY_START_MS;
  setConnection(null);
  applyMe(me);
  showApp();
  loadTargets();
  pollNow();
}

function applyMe(me) {
  state.me = me || {};
  state.readOnly = Boolean(me?.readOnly);
  state.signedIn = true;
  document.body.classList.toggle("read-only", state.readOnly);
  show($("readonly-badge"), state.readOnly);
  show($("new-job"), !state.readOnly);
  editor.setDefaults({ namespace: me?.defaultNamespace });
  list.setReadOnly(state.readOnly);
  queue.setReadOnly(state.readOnly);
  renderUser();
}

function renderUser() {
  const me = state.me;
  const user = typeof me?.user === "object" && me.user ? me.user.username || me.user.name : me?.user;
  show($("user-info"), Boolean(user));
  setText($("user-info"), user ? t("user.signedInAs", { user }) : "");
  setAttr($("user-info"), "title", Array.isArray(me?.groups) && me.groups.length ? me.groups.join(", ") : null);
  show($("sign-out"), Boolean(getToken()) && state.signedIn);
}

async function loadTargets() {
  try {
    const body = await api.targets();
    const raw = Array.isArray(body) ? body : body?.items ?? body?.targets ?? [];
    const names = raw.map((item) => (typeof item === "string" ? item : item?.name)).filter(Boolean);
    editor.setTargets(Array.from(new Set(names)).sort());
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    // Targets only feed the editor's suggestions; free text still works without them.
  }
}

// ---------------------------------------------------------------------------------------------
// Polling: every 2 s while the tab is visible; one request chain at a time.
// ---------------------------------------------------------------------------------------------

let pollTimer = null;
let pollRunning = false;
let pollAgain = false;

function pollNow() {
  if (pollRunning) {
    pollAgain = true;
    return;
  }
  clearTimeout(pollTimer);
  poll();
}

async function poll() {
  if (!state.signedIn || document.hidden) return; // visibilitychange starts it again
  pollRunning = true;
  try {
    const jobs = await api.listJobs();
    state.jobsById = new Map(jobs.map((job) => [job.id, job]));
    state.jobsByUid = new Map(jobs.map((job) => [job.uid, job]));
    list.setJobs(jobs);
    if (history.isOpen && history.job) history.updateJob(state.jobsById.get(history.job.id));
    const extra = [];
    if (state.tab === "queue") extra.push(queue.refresh());
    if (history.isOpen) extra.push(history.refresh());
    await Promise.all(extra);
    state.lastUpdate = new Date();
    setConnection(null);
  } catch (error) {
    noteFailure(error);
  } finally {
    pollRunning = false;
    if (state.signedIn) {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(poll, pollAgain ? 0 : POLL_MS);
      pollAgain = false;
    }
  }
}

/** A failed call either ends the session (401: sign in again) or shows as the connection
 * state; false when the session ended. */
function noteFailure(error) {
  if (!(error instanceof ApiError)) throw error;
  if (error.status === 401) {
    needSignIn();
    return false;
  }
  setConnection(error);
  return true;
}

let connectionError = null;

function setConnection(error) {
  connectionError = error;
  renderConnection();
}

function renderConnection() {
  const banner = $("connection");
  if (!connectionError) {
    show(banner, false);
    return;
  }
  const message = connectionError.isNetwork ? t("conn.offline")
    : connectionError.status === 403 ? t("toast.forbidden", { message: connectionError.message })
    : t("conn.backend", { message: connectionError.message });
  const since = state.lastUpdate ? ` (${t("conn.updated", { time: formatRelative(state.lastUpdate) })})` : "";
  setText(banner, message + since);
  show(banner, true);
}

// ---------------------------------------------------------------------------------------------
// Job actions
// ---------------------------------------------------------------------------------------------

async function onToggle(job, enabled, input) {
  if (list.busy.has(job.id)) {
    input.checked = !enabled; // one request at a time per job
    return;
  }
  list.busy.add(job.id);
  setAttr(input, "aria-busy", "true");
  try {
    await (enabled ? api.enableJob(job.id) : api.disableJob(job.id));
    toast(t(enabled ? "toast.enabled" : "toast.disabled", { name: jobName(job) }), { kind: "success" });
    // Show the new state right away; the next poll brings the resource's own.
    state.jobsById.set(job.id, { ...job, enabled });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    input.checked = !enabled;
    if (error.status === 401) needSignIn();
    else toastError(error);
  } finally {
    list.busy.delete(job.id);
    setAttr(input, "aria-busy", null);
    list.setJobs(Array.from(state.jobsById.values()));
    pollNow();
  }
}

function onEdit(job, button) {
  editor.openEdit(state.jobsById.get(job.id) || job, button);
}

function onHistory(job, button) {
  history.open(state.jobsById.get(job.id) || job, button);
}

function onBackfill(job, button) {
  backfill.open(state.jobsById.get(job.id) || job, button);
}

async function onRunNow(job, button) {
  if (button.getAttribute("aria-busy") === "true") return;
  setAttr(button, "aria-busy", "true");
  try {
    await api.runJob(job.id);
    toast(t("toast.runRequested", { name: jobName(job) }), { kind: "success" });
    pollNow();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status === 401) needSignIn();
    else toastError(error);
  } finally {
    setAttr(button, "aria-busy", null);
  }
}

// ---------------------------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------------------------

function needSignIn() {
  state.signedIn = false;
  clearTimeout(pollTimer);
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  show($("panel-jobs"), false);
  show($("panel-queue"), false);
  show($("tabs"), false);
  show($("new-job"), false);
  show($("sign-out"), false);
  show($("user-info"), false);
  show($("signin"), true);
  setConnection(null);
  $("signin-token").focus();
}

function showApp() {
  show($("signin"), false);
  show($("tabs"), true);
  selectTab(state.tab, { focus: false });
}

function setupSignIn() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("signin-token");
    const error = $("signin-token-error");
    const token = input.value.trim();
    const fail = (message) => {
      setText(error, message);
      show(error, true);
      setAttr(input, "aria-invalid", "true");
      setAttr(input, "aria-describedby", error.id);
      input.focus();
    };
    if (!token) {
      fail(t("editor.errRequired"));
      return;
    }
    setToken(token);
    try {
      const me = await api.me();
      input.value = "";
      show(error, false);
      setAttr(input, "aria-invalid", null);
      setAttr(input, "aria-describedby", null);
      applyMe(me);
      showApp();
      loadTargets();
      pollNow();
      $("main").focus();
    } catch (exc) {
      if (!(exc instanceof ApiError)) throw exc;
      if (exc.status === 401) {
        setToken("");
        fail(t("auth.rejected"));
      } else {
        fail(exc.isNetwork ? t("toast.network") : exc.message);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Language and tabs
// ---------------------------------------------------------------------------------------------

function setupLangSwitch() {
  for (const button of $("lang-switch").querySelectorAll("button")) {
    button.addEventListener("click", () => setLang(button.dataset.lang));
  }
}

function updateLangButtons() {
  for (const button of $("lang-switch").querySelectorAll("button")) {
    setAttr(button, "aria-pressed", String(button.dataset.lang === getLang()));
  }
}

function setupTabs() {
  const tabs = Array.from($("tabs").querySelectorAll('[role="tab"]'));
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab.id === "tab-queue" ? "queue" : "jobs", { focus: false }));
    tab.addEventListener("keydown", (event) => {
      const index = tabs.indexOf(tab);
      let next = null;
      if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
      else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
      else if (event.key === "Home") next = tabs[0];
      else if (event.key === "End") next = tabs[tabs.length - 1];
      if (!next) return;
      event.preventDefault();
      selectTab(next.id === "tab-queue" ? "queue" : "jobs", { focus: true });
    });
  }
}

function selectTab(tab, { focus }) {
  state.tab = tab;
  for (const [name, tabId, panelId] of [["jobs", "tab-jobs", "panel-jobs"], ["queue", "tab-queue", "panel-queue"]]) {
    const selected = name === tab;
    const button = $(tabId);
    setAttr(button, "aria-selected", String(selected));
    setAttr(button, "tabindex", selected ? null : "-1");
    show($(panelId), selected && $("signin").hidden);
    if (selected && focus) button.focus();
  }
  const hash = tab === "queue" ? "#queue" : "";
  if (window.location.hash !== hash) {
    window.history.replaceState(window.history.state, "", window.location.pathname + window.location.search + hash);
  }
  if (tab === "queue" && state.signedIn) pollNow();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
