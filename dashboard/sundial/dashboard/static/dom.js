// Small DOM helpers shared by the views. No framework: views build their nodes once and then
// update text and attributes in place, so a refresh never replaces the element that has focus.

/**
 * `h("button", {class: "btn", onclick: fn, "aria-label": "x"}, "text", child)`.
 * `null`, `undefined` and `false` attributes and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Set text only when it changed (keeps screen readers and selections calm). */
export function setText(el, text) {
  const value = text ?? "";
  if (el.textContent !== value) el.textContent = value;
}

/** Set or remove an attribute only when it changed. */
export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  const text = value === true ? "" : String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

export function show(el, visible) {
  if (el.hidden === visible) el.hidden = !visible;
}

/**
 * Keep `container`'s children in step with `items`: existing nodes (by key) are updated in
 * place, new ones created, gone ones removed, and nodes are moved only when the order changed,
 * never when a node already sits in the right place (moving a node drops its focus).
 *
 * @param {Element} container
 * @param {any[]} items
 * @param {(item: any) => string} keyOf
 * @param {(item: any) => Element} create returns a node; `update` is called right after
 * @param {(node: Element, item: any) => void} update
 */
export function reconcile(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const node of Array.from(container.children)) {
    if (node.dataset.key !== undefined) existing.set(node.dataset.key, node);
  }
  const wanted = [];
  for (const item of items) {
    const key = keyOf(item);
    let node = existing.get(key);
    if (node) {
      existing.delete(key);
    } else {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    wanted.push(node);
  }
  for (const node of existing.values()) node.remove();
  let cursor = container.firstElementChild;
  for (const node of wanted) {
    if (node === cursor) {
      cursor = cursor.nextElementSibling;
      continue;
    }
    container.insertBefore(node, cursor);
  }
}

let idCounter = 0;
/** A fresh id for aria-labelledby/-describedby wiring. */
export function uid(prefix = "id") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** Add or remove one id in a space-separated id list attribute (aria-describedby). */
export function toggleIdRef(el, attr, id, present) {
  const ids = new Set((el.getAttribute(attr) || "").split(/\s+/).filter(Boolean));
  if (present) ids.add(id);
  else ids.delete(id);
  setAttr(el, attr, ids.size ? Array.from(ids).join(" ") : null);
}

/** A stable pastel colour per category name. */
export function categoryHue(category) {
  let hash = 0;
  for (const ch of String(category)) hash = (hash * 31 + ch.codePointAt(0)) % 360;
  return hash;
}

/** The first line of a message (errors carry a traceback after it). */
export function firstLine(text) {
  return String(text ?? "").trim().split("\n")[0];
}

const SVG_NS = "http://www.w3.org/2000/svg";
const ICONS = {
  clock: ["M12 7v5l3 2", "circle:12,12,9"],
  lock: ["M7 11V8a5 5 0 0 1 10 0v3", "rect:5,11,14,10,2"],
};

/** A small decorative line icon (aria-hidden), drawn in currentColor. */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", `icon icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const part of ICONS[name] || []) {
    let el;
    if (part.startsWith("circle:")) {
      const [cx, cy, r] = part.slice(7).split(",");
      el = document.createElementNS(SVG_NS, "circle");
      Object.entries({ cx, cy, r }).forEach(([k, v]) => el.setAttribute(k, v));
    } else if (part.startsWith("rect:")) {
      const [x, y, width, height, rx] = part.slice(5).split(",");
      el = document.createElementNS(SVG_NS, "rect");
      Object.entries({ x, y, width, height, rx }).forEach(([k, v]) => el.setAttribute(k, v));
    } else {
      el = document.createElementNS(SVG_NS, "path");
      el.setAttribute("d", part);
    }
    svg.append(el);
  }
  return svg;
}
