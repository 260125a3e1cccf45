// Audit (#/audit): who changed what, newest first.
import { h, clear } from "./dom.js";
import { api } from "./api.js";
import { when } from "./format.js";
import { pager } from "./jobs.js";

export function viewAudit() {
  const list = h("div");
  const p = pager(async (cursor) => {
    const v = await api("GET", "/api/v1/audit?limit=25" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    clear(list, v.entries.length ? v.entries.map((e) => h("div", { class: "card", testid: "audit-row", "data-seq": e.seq },
      h("div", { class: "row" }, h("span", { class: "name", text: e.action }), h("span", { class: "mute", text: when(new Date(e.at_ms).toISOString()) })),
      h("div", null, "by " + e.actor.peer + " (" + e.actor.via + ")" + (e.target ? " · " + e.target : "")),
      h("p", { testid: "audit-text", text: e.text })))
      : h("p", { class: "mute", text: "Nothing yet." }));
    return v.next_cursor;
  });
  const el = h("section", null, h("h2", { text: "Audit" }), h("p", { class: "mute", text: "Who changed what, newest first." }), list, p.el);
  return { el, refresh: async () => { if (p.first()) await p.go(); } };
}
