// Handlers (#/handlers): the bots that take handler jobs, online or not.
import { h, clear } from "./dom.js";
import { api } from "./api.js";
import { S } from "./state.js";
import { when } from "./format.js";

export function viewHandlers() {
  const list = h("div");
  const el = h("section", null, h("h2", { text: "Handlers" }), list);
  async function refresh() {
    const v = await api("GET", "/api/v1/handlers");
    S.handlers = v.handlers || [];
    clear(list, S.handlers.length ? S.handlers.map((x) => h("div", { class: "card", testid: "handler-row", "data-name": x.handler_id || x.id },
      h("div", { class: "row" }, h("span", { class: "name", text: x.handler_id || x.id }),
        h("span", { class: x.online ? "on" : "mute", testid: "handler-state", text: x.online ? "online" : "offline" })),
      h("div", { class: "mute", testid: "handler-methods" }, "Methods: " + (x.methods || []).map((m) => (typeof m === "string" ? m : m.name)).join(", ")),
      h("div", { testid: "handler-tasks" }, "Queued " + (x.queued || 0) + " · leased " + (x.leased || 0)),
      x.last_seen ? h("div", { class: "mute" }, "Last seen " + when(typeof x.last_seen === "number" ? new Date(x.last_seen * 1000).toISOString() : x.last_seen)) : null))
      : h("p", { class: "mute", text: "No handler has connected yet." }));
  }
  return { el, refresh };
}
