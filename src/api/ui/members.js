// Members (#/members): peers with their QR codes, roles and state, and the endpoint.
import { h, add, clear, $, flash, field } from "./dom.js";
import { api } from "./api.js";
import { when, bytes } from "./format.js";
import { confirmRow, act, busy } from "./confirm.js";
import { refreshHealth } from "./health.js";

const ONLINE_S = 180;
function b64(text) {
  let s = "";
  for (const b of new TextEncoder().encode(text)) s += String.fromCharCode(b);
  return btoa(s);
}
function issued(panel, v, verb) {
  const name = v.peer.name;
  const blob = new Blob([v.config], { type: "text/plain" });
  clear(panel, h("div", { class: "card", testid: "peer-issued" },
    h("h3", { text: verb + " " + name + ": scan this with the WireGuard app" }),
    h("p", { class: "note", text: "This QR code and config are shown this once only: the appliance keeps no copy of the private key. If they are lost, use Rotate on this member to issue a new one (the old one stops working)." }),
    h("img", { class: "qr", testid: "peer-qr", alt: "WireGuard config QR code for " + name, src: "data:image/svg+xml;base64," + b64(v.qr_svg) }),
    h("label", { for: "peer-config", text: "Config text" }),
    h("textarea", { id: "peer-config", testid: "peer-config", readonly: true, rows: "10", value: v.config }),
    h("a", { class: "btn", download: name + ".conf", href: URL.createObjectURL(blob), testid: "peer-download" }, "Download " + name + ".conf"),
    h("button", { onclick: () => clear(panel) }, "Done")));
  panel.scrollIntoView();
}
export function viewMembers() {
  const panel = h("div");
  const list = h("div", null, h("p", { class: "mute", text: "Loading…" }));
  const addBox = h("div");
  function addForm() {
    const name = h("input", { testid: "peer-name", autocomplete: "off", autocapitalize: "off", placeholder: "lowercase, e.g. olga" });
    const rl = h("select", { testid: "peer-role" }, ["viewer", "officer", "admin", "handler"].map((r) => h("option", { value: r, text: r })));
    const fe = h("p", { class: "err", role: "alert" });
    const save = h("button", { class: "pri", type: "submit", testid: "peer-save" }, "Add member");
    const f = h("form", { class: "card", novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      for (const e of f.querySelectorAll(".err")) e.textContent = "";
      for (const e of [name, rl]) e.removeAttribute("aria-invalid");
      save.disabled = true;
      try {
        const v = await api("POST", "/api/v1/peers", { name: name.value.trim(), role: rl.value });
        clear(addBox);
        issued(panel, v, "Added");
        flash("Added " + v.peer.name + ".");
        refreshHealth();
        refresh();
      } catch (e) {
        const t = e.field === "name" ? name : e.field === "role" ? rl : null;
        if (t) { $("err-" + t.id).textContent = e.message; t.setAttribute("aria-invalid", "true"); t.focus(); } else fe.textContent = e.message;
      } finally { save.disabled = false; }
    } },
      h("h3", { text: "Add a member" }),
      field("peer-name", "Name", name, "lowercase letters a-z, digits, - and _ (up to 32)"),
      field("peer-role", "Role", rl, "admin: everything · officer: jobs · viewer: read only · handler: bots"),
      fe, save, h("button", { type: "button", onclick: () => clear(addBox) }, "Cancel"));
    clear(addBox, f);
    name.focus();
  }
  // The endpoint new members' configs carry (PUT /api/v1/endpoint, admins only).
  const epNow = h("div", { testid: "endpoint-current" });
  const epWarn = h("p", { class: "note", testid: "endpoint-warning" });
  const epNew = h("input", { id: "endpoint-new", testid: "endpoint-new", autocomplete: "off", autocapitalize: "off", placeholder: "vpn.example.org or 203.0.113.7:51820" });
  const epErr = h("p", { class: "err", role: "alert" });
  function showEndpoint(e) {
    epNow.textContent = "Phones dial " + e.endpoint;
    epWarn.textContent = e.reason || "";
  }
  const epForm = h("form", { class: "card", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    epErr.textContent = "";
    try {
      const e = await api("PUT", "/api/v1/endpoint", { endpoint: epNew.value.trim() });
      showEndpoint(e);
      refreshHealth();
      epNew.value = "";
      flash("New configs carry " + e.endpoint + "; tunnels that are up stay up.");
    } catch (e) { epErr.textContent = e.message; }
  } },
    h("h3", { text: "Endpoint" }), epNow, epWarn,
    h("label", { for: "endpoint-new", text: "Change to (host name or address, optional :port)" }), epNew, epErr,
    h("button", { type: "submit", testid: "endpoint-save" }, "Change endpoint"));
  const el = h("section", null,
    h("div", { class: "row" }, h("h2", { text: "Members" }), h("button", { class: "pri", testid: "new-peer", onclick: addForm }, "Add member")),
    addBox, panel, epForm, list);
  async function refresh(force) {
    if (!force && busy(list)) return;
    if (!epNow.textContent) api("GET", "/api/v1/endpoint").then(showEndpoint, (e) => { epNow.textContent = e.message; });
    const peers = await api("GET", "/api/v1/peers");
    const admins = peers.filter((p) => p.role === "admin" && p.enabled).length;
    const now = Date.now() / 1000;
    clear(list, peers.map((p) => {
      const online = p.enabled && p.last_handshake && now - p.last_handshake < ONLINE_S;
      const lastAdmin = p.role === "admin" && p.enabled && admins <= 1;
      const enc = encodeURIComponent(p.name);
      const box = h("div", { class: "card", testid: "peer-row", "data-name": p.name });
      const roleSel = h("select", { id: "role-" + p.name, testid: "peer-row-role", disabled: lastAdmin, onchange: () => act(() => api("PATCH", "/api/v1/peers/" + enc, { role: roleSel.value }), p.name + " is now " + roleSel.value + ".") },
        ["admin", "officer", "viewer", "handler"].map((r) => h("option", { value: r, text: r })));
      roleSel.value = p.role;
      add(box, [
        h("div", { class: "row" }, h("span", { class: "name", text: p.name }),
          h("span", { class: !p.enabled ? "paused" : online ? "on" : "mute", testid: "peer-state", text: !p.enabled ? "disabled" : online ? "online" : "offline" })),
        h("div", { class: "mute" }, p.role + " · " + p.address + (p.endpoint ? " · from " + p.endpoint : "")),
        h("div", { class: "mute" }, "Last seen: " + (p.last_handshake ? when(new Date(p.last_handshake * 1000).toISOString()) : "never"),
          " · ↓ " + bytes(p.tx_bytes) + " ↑ " + bytes(p.rx_bytes)),
        lastAdmin ? h("p", { class: "note", testid: "peer-guard", text: p.name + " is the only enabled admin, so its role cannot change and it cannot be disabled or removed: nobody would be left to manage members. Add or promote another admin first." }) : null,
        h("label", { for: "role-" + p.name, text: "Role" }), roleSel,
        h("div", null,
          h("button", { testid: "peer-toggle", disabled: lastAdmin && p.enabled, onclick: () => act(() => api("PATCH", "/api/v1/peers/" + enc, { enabled: !p.enabled }), p.name + (p.enabled ? " is disabled." : " is enabled.")) }, p.enabled ? "Disable" : "Enable"),
          h("button", { testid: "peer-rotate", onclick: () => confirmRow(box, "Issue new keys for " + p.name + "? Its current config stops working at once.", "Rotate",
            () => act(async () => issued(panel, await api("POST", "/api/v1/peers/" + enc + "/rotate"), "Rotated"))) }, "Rotate"),
          h("button", { class: "dng", disabled: lastAdmin, testid: "peer-remove", onclick: () => confirmRow(box, "Remove " + p.name + "? Its tunnel closes at once.", "Remove",
            () => act(() => api("DELETE", "/api/v1/peers/" + enc), "Removed " + p.name + ".")) }, "Remove")),
      ]);
      return box;
    }));
  }
  return { el, refresh };
}
