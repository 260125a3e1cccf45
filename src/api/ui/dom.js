// DOM helpers: elements built with DOM calls only (never HTML strings, so API data cannot
// become markup), a labelled form field with its error slot, and the status line.
export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "testid") e.dataset.testid = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "value") e.value = v;
    else if (k === "checked") e.checked = !!v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  add(e, kids);
  return e;
}
export function add(e, kids) {
  for (const k of kids.flat(3)) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}
export function clear(e, ...kids) {
  e.replaceChildren();
  return add(e, kids);
}
export const $ = (id) => document.getElementById(id);
export let flashedAt = 0;
export function flash(text, bad) {
  flashedAt = text ? Date.now() : 0;
  const m = $("msg");
  m.textContent = text || "";
  m.className = bad ? "bad" : "";
}

export function field(id, label, input, hint) {
  input.id = id;
  input.setAttribute("aria-describedby", "err-" + id + (hint ? " hint-" + id : ""));
  return h("div", { class: "field", "data-for": id },
    h("label", { for: id, text: label }), input,
    hint ? h("div", { class: "mute", id: "hint-" + id, text: hint }) : null,
    h("p", { class: "err", id: "err-" + id, role: "alert" }));
}
