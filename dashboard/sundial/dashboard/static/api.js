// The REST API of sundial-dashboard (docs/dashboard.md): one fetch wrapper that adds the bearer
// token and turns error bodies into ApiError, and one function per endpoint.

const TOKEN_KEY = "sundial.token";
const API_BASE = new URL("../api/", import.meta.url);

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the server could not be reached
   * @param {{reason?: string, message?: string, fields?: {field: string, message: string}[]}} error
   */
  constructor(status, error = {}) {
    super(error.message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.reason = error.reason || "";
    this.fields = Array.isArray(error.fields) ? error.fields : [];
  }

  get isNetwork() {
    return this.status === 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Token: `#token=…` in the address bar is moved to sessionStorage, then sent on every call.
// ---------------------------------------------------------------------------------------------

export function adoptTokenFromUrl() {
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) return;
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (token === null) return;
  setToken(token);
  params.delete("token");
  const rest = params.toString();
  const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
  window.history.replaceState(window.history.state, "", url);
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token is lost on reload, nothing else to do
  }
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

/** `path` is relative to /api/, e.g. "jobs". Resolves to the parsed JSON body (or null). */
export async function request(method, path, { body, query, signal } = {}) {
  const url = new URL(path, API_BASE);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (exc) {
    if (exc?.name === "AbortError") throw exc;
    throw new ApiError(0, { reason: "Network", message: String(exc?.message || exc) });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && typeof data.error === "object" ? data.error : { message: text || response.statusText };
    throw new ApiError(response.status, error);
  }
  return data;
}

/** "ns/name" (two segments) or "uid:…" (one), each segment escaped. */
export function jobPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

export const api = {
  me: () => request("GET", "me"),
  targets: () => request("GET", "targets"),
  listJobs: (query) => request("GET", "jobs", { query }),
  getJob: (id) => request("GET", `jobs/${jobPath(id)}`),
  createJob: (body) => request("POST", "jobs", { body }),
  patchJob: (id, body) => request("PATCH", `jobs/${jobPath(id)}`, { body }),
  deleteJob: (id) => request("DELETE", `jobs/${jobPath(id)}`),
  runJob: (id) => request("POST", `jobs/${jobPath(id)}/run`),
  backfillJob: (id, body, { dryRun, signal } = {}) =>
    request("POST", `jobs/${jobPath(id)}/backfill`, { body, query: { dryRun: dryRun ? "true" : undefined }, signal }),
  enableJob: (id) => request("POST", `jobs/${jobPath(id)}/enable`),
  disableJob: (id) => request("POST", `jobs/${jobPath(id)}/disable`),
  runs: (id, { limit, offset, status } = {}, signal) =>
    request("GET", `jobs/${jobPath(id)}/runs`, { query: { limit, offset, status }, signal }),
  runLogs: (id, run) => request("GET", `jobs/${jobPath(id)}/logs`, { query: { run } }),
  queue: (query) => request("GET", "queue", { query }),
  deadLetters: (query) => request("GET", "deadletters", { query }),
  retryRun: (runId) => request("POST", `runs/${encodeURIComponent(runId)}/retry`),
  previewSchedule: (schedule, timeZone, signal, policies = {}) =>
    request("POST", "schedule/preview", { body: { schedule, timeZone, ...policies }, signal }),
};
