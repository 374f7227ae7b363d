// Short messages in two live regions: `#status-region` (role=status, polite) for confirmations and
// `#alert-region` (role=alert) for errors such as a 403 with the API server's message.

import { h } from "./dom.js";
import { t } from "./i18n.js";

const INFO_MS = 5000;
const ERROR_MS = 12000;

function region(kind) {
  return document.getElementById(kind === "error" ? "alert-region" : "status-region");
}

/**
 * @param {string} message
 * @param {{kind?: "info"|"success"|"error", action?: {label: string, run: () => void}}} options
 */
export function toast(message, { kind = "info", action } = {}) {
  const container = region(kind);
  if (!container) return;
  const close = () => {
    // Keep focus on the page when the toast that had it goes away.
    if (item.contains(document.activeElement)) document.getElementById("main")?.focus();
    item.remove();
  };
  const item = h(
    "div",
    { class: `toast toast-${kind}` },
    h("span", { class: "toast-icon", "aria-hidden": "true" }, kind === "error" ? "⚠" : kind === "success" ? "✓" : "ℹ"),
    h("span", { class: "toast-text" }, message),
    action
      ? h("button", { type: "button", class: "btn btn-small", onclick: () => { close(); action.run(); } }, action.label)
      : null,
    h("button", { type: "button", class: "icon-btn", "aria-label": t("toast.dismiss"), onclick: close }, "×"),
  );
  container.append(item);
  const timer = setTimeout(close, kind === "error" ? ERROR_MS : INFO_MS);
  item.addEventListener("focusin", () => clearTimeout(timer));
  return item;
}

/** The message for an ApiError (403 gets the API server's wording, prefixed). */
export function errorMessage(error) {
  if (!error) return "";
  if (error.isNetwork) return t("toast.network");
  if (error.status === 403) return t("toast.forbidden", { message: error.message });
  return t("toast.error", { message: error.message || String(error) });
}

export function toastError(error) {
  return toast(errorMessage(error), { kind: "error" });
}
