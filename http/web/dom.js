// DOM helpers. Every value from the server or the user goes in as text (textContent, attribute
// values), never as markup.

/**
 * el("p", {class: "x", "aria-live": "polite"}, "text", child, ...): an element. Attributes
 * starting with "on" are event listeners; `null`, `false` and `undefined` are skipped, in
 * attributes and children alike.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.appendChild(c);
    else node.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces the children of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Sets `node`'s text, only when it changed (a live region announces each change). */
export function setText(node, text) {
  const t = String(text);
  if (node.textContent !== t) node.textContent = t;
}

export function money(cents, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
  } catch (e) {
    return `${(cents / 100).toFixed(2)} ${currency}`;
  }
}

/** Briefly marks `node` as changed (a CSS animation). */
export function flash(node) {
  node.classList.remove("changed");
  void node.offsetWidth; // restart the animation
  node.classList.add("changed");
}

let idCounter = 0;
/** A labelled form field: <label for=id>text</label><input id=id ...>. */
export function field(label, attrs) {
  const id = `f${++idCounter}`;
  return el("div", { class: "field" }, el("label", { for: id }, label), el("input", { id, ...attrs }));
}
