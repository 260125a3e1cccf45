// Jobs: the list (#/jobs), one job with its run history (#/job/ID), failures (#/failures),
// and the cursor pager they share with the audit view.
import { h, add, clear } from "./dom.js";
import { api } from "./api.js";
import { may } from "./state.js";
import { when, schedule, target, statusEl } from "./format.js";
import { confirmRow, act, busy } from "./confirm.js";

function jobButtons(j, box, after) {
  const id = encodeURIComponent(j.id);
  const b = [may("POST /api/v1/jobs/{id}/run"), may("POST /api/v1/jobs/{id}/" + (j.paused ? "resume" : "pause")),
    may("PATCH /api/v1/jobs/{id}"), may("POST /api/v1/jobs"), may("DELETE /api/v1/jobs/{id}")];
  if (!b.some(Boolean)) return null;
  return h("div", null,
    b[0] && h("button", { testid: "job-run", onclick: () => act(() => api("POST", "/api/v1/jobs/" + id + "/run"), "Started " + j.name + ".") }, "Run now"),
    !b[1] ? null : j.paused
      ? h("button", { testid: "job-resume", onclick: () => act(() => api("POST", "/api/v1/jobs/" + id + "/resume"), "Resumed " + j.name + ".") }, "Resume")
      : h("button", { testid: "job-pause", onclick: () => act(() => api("POST", "/api/v1/jobs/" + id + "/pause"), "Paused " + j.name + ".") }, "Pause"),
    b[2] && h("a", { class: "btn", href: "#/edit/" + id, testid: "job-edit" }, "Edit"),
    b[3] && h("a", { class: "btn", href: "#/dup/" + id, testid: "job-duplicate" }, "Duplicate"),
    b[4] && h("button", { class: "dng", testid: "job-delete", onclick: () => confirmRow(box, "Delete " + j.name + "? Its run history goes too; this cannot be undone.", "Delete",
      () => act(() => api("DELETE", "/api/v1/jobs/" + id), "Deleted " + j.name + ".", after)) }, "Delete"));
}
function jobCard(j, last, linkName) {
  const box = h("div", { class: "card", testid: "job-row", "data-name": j.name, "data-id": j.id });
  add(box, [
    h("div", { class: "row" },
      linkName ? h("a", { class: "name", href: "#/job/" + j.id, testid: "job-link" }, j.name) : h("span", { class: "name" }, j.name),
      j.paused ? h("span", { class: "paused", text: "paused" }) : (j.running ? h("span", { class: "running", text: "running" }) : null)),
    h("div", { class: "mute" }, schedule(j.trigger)),
    h("div", { class: "mute" }, target(j.action)),
    h("div", null, "Next: ", h("span", { testid: "job-next" }, j.paused ? "paused" : when(j.next_fire_at))),
    h("div", null, "Last: ", statusEl(last), last ? " " + when(last.finished_at || last.started_at || last.scheduled_at) : ""),
    last && last.error ? h("div", { class: "err", text: last.error }) : null,
    jobButtons(j, box, linkName ? null : () => { location.hash = "#/jobs"; }),
  ]);
  return box;
}
export function viewJobs() {
  const list = h("div", null, h("p", { class: "mute", text: "Loading…" }));
  const el = h("section", null,
    h("div", { class: "row" }, h("h2", { text: "Jobs" }),
      may("POST /api/v1/jobs") ? h("a", { class: "btn pri", href: "#/new", testid: "new-job" }, "New job") : null),
    list);
  async function refresh(force) {
    if (!force && busy(list)) return;
    const [jobs, runs] = await Promise.all([api("GET", "/api/v1/jobs?limit=500"), api("GET", "/api/v1/runs?limit=200")]);
    const last = {};
    for (const r of runs.runs) if (!last[r.job_id]) last[r.job_id] = r;
    if (!jobs.jobs.length) {
      clear(list, h("p", { class: "mute" }, may("POST /api/v1/jobs") ? "No jobs yet: press New job." : "No jobs yet."));
      return;
    }
    clear(list, jobs.jobs.map((j) => jobCard(j, last[j.id], true)));
  }
  return { el, refresh };
}

function runRow(r, showJob) {
  return h("div", { class: "card", testid: "run-row", "data-id": r.id, "data-status": r.status },
    h("div", { class: "row" },
      showJob ? h("a", { class: "name", href: "#/job/" + r.job_id }, r.job_name) : h("span", null, r.trigger === "manual" ? "run now" : "scheduled"),
      statusEl(r)),
    h("div", { class: "mute" }, when(r.started_at || r.scheduled_at),
      r.attempt > 1 ? " · " + r.attempt + " attempts" : "",
      r.count > 1 ? " · " + r.count + " fires" : "",
      r.duration_ms !== null && r.duration_ms !== undefined ? " · " + r.duration_ms + " ms" : "",
      // Handler runs (handlers branch): which handler, how long it waited in the queue.
      r.handler ? " · handler " + r.handler : "",
      typeof r.queue_delay_ms === "number" ? " · waited " + (r.queue_delay_ms / 1000).toFixed(1) + " s" : ""),
    r.error ? h("div", { class: "err", testid: "run-error", text: r.error }) : null,
    r.result !== undefined && r.result !== null ? h("code", { testid: "run-result", text: "result: " + JSON.stringify(r.result).slice(0, 200) }) : null);
}

export function pager(load) {
  // Cursor paging: `stack` holds the cursors of the pages before the current one.
  const stack = [];
  let cur = null, next = null;
  const older = h("button", { testid: "page-older", onclick: () => { stack.push(cur); cur = next; go(); } }, "Older");
  const newer = h("button", { testid: "page-newer", onclick: () => { cur = stack.pop() || null; go(); } }, "Newer");
  const el = h("div", { class: "pager" }, newer, older);
  async function go() {
    next = await load(cur);
    older.disabled = !next;
    newer.disabled = stack.length === 0;
  }
  return { el, go, first: () => cur === null };
}

export function viewJob(id) {
  const head = h("div", null, h("p", { class: "mute", text: "Loading…" }));
  const hist = h("div");
  // The newest run, from the first history page: the card's "Last:".
  let latest = null;
  const p = pager(async (cursor) => {
    const v = await api("GET", "/api/v1/jobs/" + encodeURIComponent(id) + "/runs?limit=20" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    if (!cursor) latest = v.runs[0] || null;
    clear(hist, v.runs.length ? v.runs.map((r) => runRow(r, false)) : h("p", { class: "mute", text: "No runs yet." }));
    return v.next_cursor;
  });
  const el = h("section", null, h("p", null, h("a", { href: "#/jobs" }, "← Jobs")), head, h("h3", { text: "History" }), hist, p.el);
  async function refresh(force) {
    if (!force && busy(head)) return;
    const j = await api("GET", "/api/v1/jobs/" + encodeURIComponent(id));
    if (p.first()) await p.go();
    clear(head, jobCard(j, latest, false));
  }
  return { el, refresh };
}

export function viewFailures() {
  const list = h("div", null, h("p", { class: "mute", text: "Loading…" }));
  let limit = 25;
  const more = h("button", { testid: "failures-more", onclick: () => { limit += 25; refresh(); } }, "Show more");
  const el = h("section", null, h("h2", { text: "Failures" }),
    h("p", { class: "mute", text: "Failed and missed runs of every job, newest first." }), list, more);
  async function refresh() {
    const [f, m] = await Promise.all([
      api("GET", "/api/v1/runs?status=failed&limit=" + limit),
      api("GET", "/api/v1/runs?status=missed&limit=" + limit)]);
    const all = f.runs.concat(m.runs).sort((a, b) => (b.id - a.id));
    more.hidden = !(f.next_cursor || m.next_cursor);
    clear(list, all.length ? all.slice(0, limit).map((r) => runRow(r, true)) : h("p", { class: "mute", text: "No failed or missed runs." }));
  }
  return { el, refresh };
}
