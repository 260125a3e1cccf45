// The appliance dashboard: plain JavaScript modules, no build step, no library, nothing fetched
// from anywhere but this appliance's own API. This entry module is the shell: who you are, the
// navigation, the router and the 5 s poll. Hash routes: #/jobs, #/job/ID, #/new, #/edit/ID,
// #/dup/ID, #/failures, #/handlers, #/members, #/audit.
import { h, clear, $, flash, flashedAt } from "./dom.js";
import { api } from "./api.js";
import { S, may, canRead } from "./state.js";
import { refreshHealth } from "./health.js";
import { viewJobs, viewJob, viewFailures } from "./jobs.js";
import { viewForm } from "./form.js";
import { viewHandlers } from "./handlers.js";
import { viewMembers } from "./members.js";
import { viewAudit } from "./audit.js";

const POLL_MS = 5000;

function nav() {
  const items = [["#/jobs", "Jobs", canRead()], ["#/failures", "Failures", may("GET /api/v1/runs")],
    ["#/handlers", "Handlers", may("GET /api/v1/handlers") && Array.isArray(S.handlers)],
    ["#/members", "Members", may("GET /api/v1/peers")], ["#/audit", "Audit", may("GET /api/v1/audit")]];
  const cur = "#/" + (S.route.split("/")[1] || "jobs");
  clear($("nav"), items.filter((x) => x[2]).map(([href, text]) =>
    h("a", { href, "aria-current": cur === href || (href === "#/jobs" && /^#\/(job|new|edit|dup)/.test(cur)) ? "page" : null, testid: "nav-" + text.toLowerCase() }, text)));
}
async function whoami() {
  const me = await api("GET", "/api/v1/whoami");
  const changed = !S.me || S.me.role !== me.role || String(S.me.permitted) !== String(me.permitted);
  S.me = me;
  $("who").textContent = "You are " + me.peer + " (" + me.role + ") at " + me.address + ".";
  document.body.dataset.role = me.role;
  return changed;
}
async function probeHandlers() {
  if (!may("GET /api/v1/handlers")) { S.handlers = false; return; }
  try { S.handlers = (await api("GET", "/api/v1/handlers")).handlers || []; } catch (e) { S.handlers = false; }
}
async function render() {
  S.route = location.hash || "#/jobs";
  const [, name, arg] = S.route.split("/");
  nav();
  refreshHealth();
  // Keep the answer to what was just done (e.g. "Deleted …") across the navigation it caused.
  if (Date.now() - flashedAt > 1500) flash("");
  let v;
  if (!canRead()) {
    clear($("main"), h("p", { class: "err", text: "this needs the viewer, officer or admin role; " + S.me.peer + " is " + S.me.role + ". Ask an admin to change your role." }));
    S.view = null;
    return;
  }
  if (name === "job" && arg) v = viewJob(decodeURIComponent(arg));
  else if (name === "new" && may("POST /api/v1/jobs")) v = viewForm("new", null);
  else if (name === "edit" && arg && may("PATCH /api/v1/jobs/{id}")) v = viewForm("edit", decodeURIComponent(arg));
  else if (name === "dup" && arg && may("POST /api/v1/jobs")) v = viewForm("dup", decodeURIComponent(arg));
  else if (name === "failures" && may("GET /api/v1/runs")) v = viewFailures();
  else if (name === "handlers" && Array.isArray(S.handlers)) v = viewHandlers();
  else if (name === "members" && may("GET /api/v1/peers")) v = viewMembers();
  else if (name === "audit" && may("GET /api/v1/audit")) v = viewAudit();
  else v = viewJobs();
  S.view = v;
  clear($("main"), v.el);
  try {
    if (v.start) await v.start();
    if (v.refresh) await v.refresh();
  } catch (e) {
    if (S.view === v) clear($("main"), h("p", { class: "err", text: e.message }));
  }
}
async function tick() {
  if (document.hidden) return;
  const view = S.view;
  try {
    if (await whoami()) { await probeHandlers(); await render(); return; }
    if (view && view.refresh) await view.refresh();
  } catch (e) {
    // A poll of a view that was left meanwhile (e.g. a job just deleted) says nothing.
    if (S.view === view) flash(e.message, true);
  }
}
async function boot() {
  try {
    await whoami();
  } catch (e) {
    $("who").textContent = e.message;
    return;
  }
  await probeHandlers();
  window.addEventListener("hashchange", render);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
  setInterval(tick, POLL_MS);
  await render();
}
boot();
