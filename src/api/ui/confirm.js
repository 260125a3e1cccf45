// Inline confirmation and running an action: the answer goes to the status line.
import { h, flash } from "./dom.js";
import { S } from "./state.js";
import { refreshHealth } from "./health.js";

export function confirmRow(container, question, yesLabel, onYes) {
  const old = container.querySelector(".confirm");
  if (old) old.remove();
  const box = h("div", { class: "card confirm note", role: "alertdialog", "aria-label": question },
    h("p", { text: question }),
    h("button", { class: "dng", testid: "confirm-yes", onclick: async () => { box.remove(); await onYes(); } }, yesLabel),
    h("button", { onclick: () => box.remove() }, "Cancel"));
  container.append(box);
  box.querySelector("button").focus();
}
// Runs an action, says how it went, then either goes on with `then` (e.g. leaving a deleted
// job's page) or refreshes the view it was taken from.
export async function act(fn, okText, then) {
  const view = S.view;
  try {
    await fn();
    if (okText) flash(okText);
    if (then) then();
    else if (S.view === view && view && view.refresh) {
      // The refresh replaces the control that was tapped, and Chromium (148) scrolls to the top
      // when the focused element goes: let go of it first, so the answer stays in view.
      const a = document.activeElement;
      if (a && view.el.contains(a)) a.blur();
      await view.refresh(true);
    }
  } catch (e) {
    flash(e.message, true);
  }
  refreshHealth();
}
// A poll must not pull the rug from under an open confirmation or a focused menu.
export function busy(box) {
  const a = document.activeElement;
  return !!box.querySelector(".confirm") || (!!a && a.tagName === "SELECT" && box.contains(a));
}
