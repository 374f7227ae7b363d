// Modal <dialog>s: opened with showModal() (the rest of the page becomes inert), Tab and
// Shift+Tab cycle inside, Escape and every [data-close] button close, and focus goes back to the
// control that opened the dialog (or a stand-in if that control was re-rendered away).

const FOCUSABLE = [
  "a[href]",
  "button:not([disabled])",
  "input:not([disabled]):not([type=hidden])",
  "select:not([disabled])",
  "textarea:not([disabled])",
  "summary",
  "[tabindex]:not([tabindex='-1'])",
].join(",");

function focusables(root) {
  // Rendered ones only: hidden panels and the inside of a closed <details> have no boxes.
  return Array.from(root.querySelectorAll(FOCUSABLE)).filter((el) => el.getClientRects().length > 0);
}

const wired = new WeakSet();

/**
 * Toasts live inside the open modal dialog: outside it they would sit under its backdrop and be
 * inert (unreadable, their buttons unreachable).
 */
function moveToasts(container) {
  const toasts = document.querySelector(".toasts");
  if (toasts && toasts.parentElement !== container) container.append(toasts);
}

function wire(dialog) {
  if (wired.has(dialog)) return;
  wired.add(dialog);
  dialog.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.closest("[data-close]")) dialog.close();
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const items = focusables(dialog);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
  dialog.addEventListener("close", () => {
    const other = document.querySelector("dialog[open]");
    moveToasts(other || document.body);
    const state = dialog.sundialState;
    dialog.sundialState = null;
    if (!state) return;
    state.onClose?.();
    const target = typeof state.returnTo === "function" ? state.returnTo() : state.returnTo;
    const fallback = document.getElementById("main");
    (target && target.isConnected && !target.closest("[hidden]") ? target : fallback)?.focus();
  });
}

/**
 * @param {HTMLDialogElement} dialog
 * @param {HTMLElement | (() => HTMLElement | null) | null} returnTo where focus goes on close
 * @param {() => void} [onClose]
 */
export function openDialog(dialog, returnTo, onClose) {
  wire(dialog);
  if (dialog.open) {
    dialog.sundialState = { returnTo, onClose };
    return;
  }
  dialog.sundialState = { returnTo: returnTo ?? document.activeElement, onClose };
  dialog.showModal();
  moveToasts(dialog);
  const first = focusables(dialog).find((el) => !el.matches("[data-close]"));
  first?.focus();
}
