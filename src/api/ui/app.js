// The appliance dashboard: plain JavaScript, no build step, no library, nothing fetched from
// anywhere but this appliance's own API. Views are rendered from JSON with DOM calls only
// (never HTML strings), so API data cannot become markup. Hash routes: #/jobs, #/job/ID,
// #/new, #/edit/ID, #/dup/ID, #/failures, #/handlers, #/members, #/audit.
"use strict";
(function () {
  const POLL_MS = 5000;
  const ONLINE_S = 180;
  const S = { me: null, handlers: null, view: null, route: "" };

  // ---- DOM helpers -----------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
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
  function add(e, kids) {
    for (const k of kids.flat(3)) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }
  function clear(e, ...kids) {
    e.replaceChildren();
    return add(e, kids);
  }
  const $ = (id) => document.getElementById(id);
  let flashedAt = 0;
  function flash(text, bad) {
    flashedAt = text ? Date.now() : 0;
    const m = $("msg");
    m.textContent = text || "";
    m.className = bad ? "bad" : "";
  }

  // ---- API -------------------------------------------------------------------------------
  async function api(method, path, body) {
    const opt = { method, headers: {}, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    const r = await fetch(path, opt);
    let v = null;
    try { v = await r.json(); } catch (_) { v = null; }
    if (!r.ok) {
      const er = (v && v.error) || {};
      const e = new Error(er.message || "the appliance answered HTTP " + r.status);
      e.status = r.status;
      e.field = er.field || null;
      e.code = er.code || "";
      throw e;
    }
    return v;
  }
  // What the caller may do is the server's route table for its role (GET /api/v1/whoami's
  // "permitted": "METHOD /path" pairs); a control shows only when its route is listed. The API
  // still checks every request.
  const may = (route) => !!S.me && Array.isArray(S.me.permitted) && S.me.permitted.includes(route);
  const canRead = () => may("GET /api/v1/jobs");

  // ---- Server health --------------------------------------------------------------------
  // The banner above every view: what is wrong with the server, in plain words, and what a
  // phone user can do about it; empty (hidden) when all is well. Read from GET /api/v1/health
  // (every role) and, where the role may read it, GET /api/v1/endpoint. Refreshed when the page
  // loads, on every navigation and after every action; not on the 5 s poll.
  function problems(hl, ep) {
    const out = [];
    const st = hl.storage || {};
    // Admins manage members from here but may not run the server machine themselves.
    const ask = may("GET /api/v1/peers") ? "Ask whoever runs the server machine to " : "Ask your admin to ";
    if (st.writable === false) {
      out.push(st.disk_full
        ? "The server's disk is full, so nothing new can be saved: changes are refused and job runs are not recorded. " + ask + "free disk space on it; the server recovers by itself, no restart needed."
        : "The server's database is refusing writes" + (st.reason ? " (" + st.reason + ")" : "") + ", so changes are refused. " + ask + "look at the server's log; it recovers by itself once the cause is fixed.");
    } else if (hl.scheduler && hl.scheduler.recording === false) {
      out.push("The scheduler cannot record job runs right now, so jobs are not running on time and Run now is refused. " + ask + "check the server's disk; missed runs follow each job's misfire rule once it recovers.");
    }
    if (hl.damaged_rows > 0) {
      const n = hl.damaged_rows;
      out.push(n + (n === 1 ? " stored record is" : " stored records are") + " damaged and left out, so a job, member or run may be missing from these lists. " + ask + "run \"appliance doctor\" on the server.");
    }
    if (ep && ep.reason) {
      const fix = may("PUT /api/v1/endpoint")
        ? "Set this server's public name or address under Members, Endpoint."
        : "Ask your admin to set this server's public name or address.";
      out.push("New members' phones may not reach this server from outside your network: their configs dial " + ep.endpoint + ". " + fix);
    }
    return out;
  }
  async function refreshHealth() {
    const box = $("health");
    try {
      const [hl, ep] = await Promise.all([api("GET", "/api/v1/health"),
        may("GET /api/v1/endpoint") ? api("GET", "/api/v1/endpoint").catch(() => null) : null]);
      const list = problems(hl, ep);
      const fixHere = ep && ep.reason && may("PUT /api/v1/endpoint") && !S.route.startsWith("#/members");
      clear(box, list.length ? [h("strong", { text: "The server needs attention" }),
        list.map((t) => h("p", { testid: "health-problem", text: t })),
        fixHere ? h("a", { class: "btn", href: "#/members", testid: "health-fix-endpoint" }, "Go to Members") : null] : []);
      box.hidden = !list.length;
    } catch (e) {
      // Health is open to every role; a failure here is the connection, which the views report.
    }
  }

  // ---- Formatting ------------------------------------------------------------------------
  function rel(ms) {
    const s = Math.round((ms - Date.now()) / 1000), a = Math.abs(s);
    const t = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min"
      : a < 86400 ? Math.round(a / 3600) + " h" : Math.round(a / 86400) + " d";
    return s >= 0 ? "in " + t : t + " ago";
  }
  function when(iso, tz) {
    if (!iso) return "—";
    const d = new Date(iso);
    let txt;
    try {
      txt = d.toLocaleString(undefined, { timeZone: tz || undefined, weekday: "short", day: "numeric",
        month: "short", hour: "2-digit", minute: "2-digit", timeZoneName: tz ? "short" : undefined });
    } catch (_) { txt = d.toISOString(); }
    return txt + " (" + rel(d.getTime()) + ")";
  }
  function bytes(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function schedule(t) {
    if (!t) return "";
    if (t.cron) return "cron " + t.cron + " (" + (t.timezone || "UTC") + ")";
    if (t.every) return "every " + t.every;
    if (t.at) return "once at " + when(t.at);
    return JSON.stringify(t);
  }
  function target(a) {
    if (a && a.webhook) {
      try { return "webhook to " + new URL(a.webhook.url).host; } catch (_) { return "webhook"; }
    }
    if (a && a.handler) return "handler " + (a.handler.id || "") + " · " + (a.handler.method || "");
    return "";
  }
  function statusEl(r) {
    if (!r) return h("span", { class: "mute", text: "never run" });
    return h("span", { class: r.status, text: r.status + (r.http_status ? " (HTTP " + r.http_status + ")" : "") });
  }

  // ---- Inline confirmation ---------------------------------------------------------------
  function confirmRow(container, question, yesLabel, onYes) {
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
  async function act(fn, okText, then) {
    const view = S.view;
    try {
      await fn();
      if (okText) flash(okText);
      if (then) then();
      else if (S.view === view && view && view.refresh) await view.refresh(true);
    } catch (e) {
      flash(e.message, true);
    }
    refreshHealth();
  }
  // A poll must not pull the rug from under an open confirmation or a focused menu.
  function busy(box) {
    const a = document.activeElement;
    return !!box.querySelector(".confirm") || (!!a && a.tagName === "SELECT" && box.contains(a));
  }

  // ---- Jobs ------------------------------------------------------------------------------
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
  function viewJobs() {
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

  function pager(load) {
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

  function viewJob(id) {
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

  function viewFailures() {
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

  // ---- Job form --------------------------------------------------------------------------
  const DAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
  function zones() {
    let z = [];
    try { z = Intl.supportedValuesOf("timeZone"); } catch (_) { z = []; }
    if (!z.includes("UTC")) z = ["UTC"].concat(z);
    return z;
  }
  function browserZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (_) { return "UTC"; }
  }
  function partsIn(ms, tz) {
    const f = new Intl.DateTimeFormat("en-US", { timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    const p = {};
    for (const x of f.formatToParts(new Date(ms))) p[x.type] = Number(x.value);
    return p;
  }
  function offsetAt(ms, tz) {
    const p = partsIn(ms, tz);
    return Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
  }
  // "2026-12-03T19:45" on the wall clock of `tz` -> RFC 3339 instant.
  function zonedToInstant(local, tz) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local || "");
    if (!m) return local || "";
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    let t = wall;
    for (let i = 0; i < 3; i++) t = wall - offsetAt(t, tz);
    return new Date(t).toISOString().replace(".000Z", "Z");
  }
  function instantToZoned(iso, tz) {
    const p = partsIn(new Date(iso).getTime(), tz);
    const d = (n) => String(n).padStart(2, "0");
    return p.year + "-" + d(p.month) + "-" + d(p.day) + "T" + d(p.hour % 24) + ":" + d(p.minute);
  }

  function field(id, label, input, hint) {
    input.id = id;
    input.setAttribute("aria-describedby", "err-" + id + (hint ? " hint-" + id : ""));
    return h("div", { class: "field", "data-for": id },
      h("label", { for: id, text: label }), input,
      hint ? h("div", { class: "mute", id: "hint-" + id, text: hint }) : null,
      h("p", { class: "err", id: "err-" + id, role: "alert" }));
  }

  function viewForm(mode, id) {
    const el = h("section", null, h("p", { class: "mute", text: "Loading…" }));
    let original = null;
    const ui = {};

    function inp(testid, attrs) { return (ui[testid] = h("input", Object.assign({ testid }, attrs || {}))); }
    function sel(testid, options, attrs) {
      return (ui[testid] = h("select", Object.assign({ testid }, attrs || {}),
        options.map(([v, t]) => h("option", { value: v, text: t }))));
    }

    async function build() {
      if (id) {
        original = await api("GET", "/api/v1/jobs/" + encodeURIComponent(id));
      }
      const j = original || {};
      const t = j.trigger || { cron: "0 9 * * *", timezone: browserZone() };
      const hook = (j.action && j.action.webhook) || {};
      const body = hook.body && typeof hook.body === "object" ? hook.body : {};
      const embed = (Array.isArray(body.embeds) && body.embeds[0]) || {};
      const handler = (j.action && j.action.handler) || null;
      const retry = j.retry || {};

      const tz = t.timezone || (t.cron ? "UTC" : browserZone());
      const zs = zones();
      if (!zs.includes(tz)) zs.unshift(tz);
      const kind = t.at ? "at" : t.every ? "every" : "cron";

      inp("job-name", { value: mode === "dup" ? (j.name || "") + " copy" : j.name || "", autocomplete: "off", required: true });
      sel("sched-kind", [["cron", "Repeats (calendar)"], ["every", "Repeats (fixed interval)"], ["at", "Once"]]);
      ui["sched-kind"].value = kind;
      sel("sched-preset", [["custom", "Custom (cron)"], ["minutes", "Every N minutes"], ["hours", "Every N hours"],
        ["daily", "Daily at"], ["weekly", "Weekly on days at"]]);
      inp("sched-n", { type: "number", min: "1", max: "59", value: "15", inputmode: "numeric" });
      inp("sched-time", { type: "time", value: "19:45" });
      const dayBoxes = DAYS.map((d) => h("label", { class: "inline" },
        (ui["day-" + d] = h("input", { type: "checkbox", testid: "day-" + d, value: d })), d.charAt(0) + d.slice(1).toLowerCase()));
      inp("job-schedule", { value: t.cron || "", autocomplete: "off", autocapitalize: "off", spellcheck: "false", placeholder: "45 19 * * THU" });
      inp("sched-every", { value: t.every || "15m", autocapitalize: "off", placeholder: "90s, 15m, 2h, 1d" });
      inp("sched-at", { type: "datetime-local", value: t.at ? instantToZoned(t.at, tz) : "" });
      ui["job-timezone"] = h("select", { testid: "job-timezone" }, zs.map((z) => h("option", { value: z, text: z })));
      ui["job-timezone"].value = tz;
      const preview = h("ol", { class: "fires", testid: "job-preview", "aria-live": "polite" });

      const hasHandlers = Array.isArray(S.handlers);
      sel("action-kind", [["webhook", "Discord message (webhook)"]].concat(hasHandlers ? [["handler", "Handler"]] : []));
      ui["action-kind"].value = handler && hasHandlers ? "handler" : "webhook";
      inp("job-webhook-url", { type: "url", value: hook.url || "", autocomplete: "off", autocapitalize: "off", placeholder: "https://discord.com/api/webhooks/…" });
      ui["job-message"] = h("textarea", { testid: "job-message", value: body.content || "" });
      inp("embed-title", { value: embed.title || "" });
      ui["embed-desc"] = h("textarea", { testid: "embed-desc", value: embed.description || "" });
      inp("embed-use-color", { type: "checkbox", checked: typeof embed.color === "number" });
      inp("embed-color", { type: "color", value: "#" + ((typeof embed.color === "number" ? embed.color : 0x5865f2).toString(16).padStart(6, "0")) });
      const hs = hasHandlers ? S.handlers : [];
      sel("handler-id", hs.map((x) => [x.handler_id || x.id, (x.handler_id || x.id) + (x.online ? " (online)" : " (offline)")]));
      sel("handler-method", []);
      ui["handler-params"] = h("textarea", { testid: "handler-params", value: handler ? JSON.stringify(handler.params === undefined ? {} : handler.params, null, 2) : "{}" });
      function fillMethods() {
        const x = hs.find((y) => (y.handler_id || y.id) === ui["handler-id"].value);
        const ms = x ? (x.methods || []).map((m) => (typeof m === "string" ? m : m.name)) : [];
        clear(ui["handler-method"], ms.map((m) => h("option", { value: m, text: m })));
      }
      if (handler) ui["handler-id"].value = handler.id;
      fillMethods();
      if (handler) ui["handler-method"].value = handler.method;
      ui["handler-id"].addEventListener("change", fillMethods);

      inp("retry-attempts", { type: "number", min: "1", max: "10", value: String(retry.attempts || 1), inputmode: "numeric" });
      inp("retry-backoff", { value: retry.backoff || "10s" });
      inp("job-timeout", { value: j.timeout || "30s" });
      inp("misfire-grace", { value: j.misfire_grace || "60s" });
      inp("coalesce", { type: "checkbox", checked: j.coalesce !== false });
      const formErr = h("p", { class: "err", testid: "form-error", role: "alert" });
      const testOut = h("p", { testid: "job-test-result", role: "status" });

      const cronBox = h("div", null,
        field("sched-preset", "Preset", ui["sched-preset"]),
        h("div", { class: "preset-n" }, field("sched-n", "N", ui["sched-n"])),
        h("div", { class: "preset-time" }, field("sched-time", "At (time)", ui["sched-time"])),
        h("fieldset", { class: "preset-days" }, h("legend", { text: "On days" }), h("div", { class: "days" }, dayBoxes)),
        field("job-schedule", "Cron expression", ui["job-schedule"], "minute hour day month weekday, e.g. 45 19 * * THU"));
      const everyBox = field("sched-every", "Interval", ui["sched-every"], "a duration: 90s, 15m, 2h, 1d");
      const atBox = field("sched-at", "Date and time", ui["sched-at"]);
      const hookBox = h("div", null,
        field("job-webhook-url", "Webhook URL", ui["job-webhook-url"], "Discord: channel settings → Integrations → Webhooks → Copy URL"),
        field("job-message", "Message", ui["job-message"]),
        h("details", null, h("summary", { text: "Embed (optional)" }),
          field("embed-title", "Embed title", ui["embed-title"]),
          field("embed-desc", "Embed description", ui["embed-desc"]),
          h("label", { class: "inline" }, ui["embed-use-color"], "Use a colour"),
          field("embed-color", "Embed colour", ui["embed-color"])));
      const handlerBox = h("div", null,
        field("handler-id", "Handler", ui["handler-id"]),
        field("handler-method", "Method", ui["handler-method"]),
        field("handler-params", "Params (JSON)", ui["handler-params"]));

      function sync() {
        const k = ui["sched-kind"].value;
        cronBox.hidden = k !== "cron";
        everyBox.hidden = k !== "every";
        atBox.hidden = k !== "at";
        ui["job-timezone"].closest(".field").hidden = k === "every";
        const p = ui["sched-preset"].value;
        cronBox.querySelector(".preset-n").hidden = !(p === "minutes" || p === "hours");
        cronBox.querySelector(".preset-time").hidden = !(p === "daily" || p === "weekly");
        cronBox.querySelector(".preset-days").hidden = p !== "weekly";
        const a = ui["action-kind"].value;
        hookBox.hidden = a !== "webhook";
        handlerBox.hidden = a !== "handler";
        ui["action-kind"].closest(".field").hidden = !hasHandlers;
      }
      function presetToCron() {
        const p = ui["sched-preset"].value;
        const n = Math.max(1, parseInt(ui["sched-n"].value, 10) || 1);
        const [hh, mm] = (ui["sched-time"].value || "00:00").split(":").map((x) => parseInt(x, 10) || 0);
        let c = null;
        if (p === "minutes") c = "*/" + n + " * * * *";
        else if (p === "hours") c = "0 */" + n + " * * *";
        else if (p === "daily") c = mm + " " + hh + " * * *";
        else if (p === "weekly") {
          const ds = DAYS.filter((d) => ui["day-" + d].checked);
          c = mm + " " + hh + " * * " + (ds.length ? ds.join(",") : "MON");
        }
        if (c) ui["job-schedule"].value = c;
      }

      function trigger() {
        const k = ui["sched-kind"].value;
        const tz = ui["job-timezone"].value;
        if (k === "every") return { every: ui["sched-every"].value.trim() };
        if (k === "at") return { at: zonedToInstant(ui["sched-at"].value, tz) };
        return { cron: ui["job-schedule"].value.trim(), timezone: tz };
      }
      function action() {
        if (ui["action-kind"].value === "handler") {
          let params;
          try { params = JSON.parse(ui["handler-params"].value || "null"); } catch (e) {
            const er = new Error("Params are not valid JSON: " + e.message);
            er.field = "action.handler.params";
            throw er;
          }
          return { handler: { id: ui["handler-id"].value, method: ui["handler-method"].value, params } };
        }
        const b = Object.assign({}, body);
        const content = ui["job-message"].value;
        if (content.trim()) b.content = content; else delete b.content;
        const em = Object.assign({}, embed);
        const title = ui["embed-title"].value.trim(), desc = ui["embed-desc"].value.trim();
        if (title) em.title = title; else delete em.title;
        if (desc) em.description = desc; else delete em.description;
        if (ui["embed-use-color"].checked) em.color = parseInt(ui["embed-color"].value.slice(1), 16); else delete em.color;
        if (Object.keys(em).length) b.embeds = [em].concat(Array.isArray(body.embeds) ? body.embeds.slice(1) : []);
        else delete b.embeds;
        const wh = Object.assign({}, hook, { url: ui["job-webhook-url"].value.trim() });
        if (Object.keys(b).length) wh.body = b; else delete wh.body;
        if (mode === "edit" && hook.body && typeof hook.body === "object" && wh.body) {
          // A PATCH merges objects: say explicitly which message parts were removed.
          for (const key of Object.keys(hook.body)) if (!(key in b)) b[key] = null;
        } else if (mode === "edit" && hook.body !== undefined && !wh.body) {
          wh.body = null;
        }
        return { webhook: wh };
      }
      function sameTrigger(a, b) {
        if (!b) return false;
        if (a.cron !== undefined) return a.cron === b.cron && a.timezone === (b.timezone || "UTC");
        if (a.every !== undefined) return a.every === b.every;
        return a.at !== undefined && b.at !== undefined && new Date(a.at).getTime() === new Date(b.at).getTime();
      }
      function spec() {
        const tr = trigger();
        return {
          name: ui["job-name"].value,
          // An unchanged trigger stays out of a PATCH, so renaming a job whose "at" has passed works.
          trigger: mode === "edit" && sameTrigger(tr, original.trigger) ? undefined : tr,
          action: action(),
          retry: { attempts: parseInt(ui["retry-attempts"].value, 10) || ui["retry-attempts"].value, backoff: ui["retry-backoff"].value.trim() },
          timeout: ui["job-timeout"].value.trim(),
          misfire_grace: ui["misfire-grace"].value.trim(),
          coalesce: ui["coalesce"].checked,
        };
      }

      const FIELDS = [
        ["name", "job-name"], ["trigger.cron", "job-schedule"], ["trigger.timezone", "job-timezone"],
        ["trigger.every", "sched-every"], ["trigger.at", "sched-at"], ["action.webhook.url", "job-webhook-url"],
        ["action.webhook.body", "job-message"], ["action.handler.id", "handler-id"], ["action.handler.method", "handler-method"],
        ["action.handler.params", "handler-params"], ["action.handler", "handler-id"], ["action", "job-webhook-url"],
        ["retry.attempts", "retry-attempts"], ["retry.backoff", "retry-backoff"], ["timeout", "job-timeout"],
        ["misfire_grace", "misfire-grace"], ["coalesce", "coalesce"]];
      function targetOf(f) {
        if (!f) return null;
        if (f === "trigger" || f.startsWith("trigger.start") || f.startsWith("trigger.end")) {
          return { cron: "job-schedule", every: "sched-every", at: "sched-at" }[ui["sched-kind"].value];
        }
        for (const [path, tid] of FIELDS) if (f === path || f.startsWith(path + ".")) return tid;
        return null;
      }
      function clearErrors(only) {
        for (const e of el.querySelectorAll(".field .err")) {
          const tid = e.id.slice(4);
          if (only && !only.includes(tid)) continue;
          e.textContent = "";
          if (ui[tid]) ui[tid].removeAttribute("aria-invalid");
        }
        if (!only) formErr.textContent = "";
      }
      function showError(e) {
        const tid = targetOf(e.field);
        if (tid && ui[tid]) {
          $("err-" + tid).textContent = e.message;
          ui[tid].setAttribute("aria-invalid", "true");
          const adv = ui[tid].closest("details");
          if (adv) adv.open = true;
          return tid;
        }
        formErr.textContent = (e.field ? e.field + ": " : "") + e.message;
        return null;
      }

      let seq = 0, timer = null;
      const SCHED = ["job-schedule", "job-timezone", "sched-every", "sched-at"];
      async function updatePreview() {
        const mine = ++seq;
        let tr;
        try { tr = trigger(); } catch (_) { return; }
        try {
          const v = await api("POST", "/api/v1/schedule/preview", { trigger: tr, count: 5 });
          if (mine !== seq) return;
          clearErrors(SCHED);
          const tz = v.timezone === "UTC" && tr.at ? ui["job-timezone"].value : v.timezone;
          clear(preview, v.next.length ? v.next.map((x) => h("li", { text: when(x, tz) })) : h("li", { text: "never fires again" }));
        } catch (e) {
          if (mine !== seq) return;
          clearErrors(SCHED);
          clear(preview);
          showError(e);
        }
      }
      function schedChanged() { clearTimeout(timer); timer = setTimeout(updatePreview, 300); }

      ui["sched-kind"].addEventListener("change", () => { sync(); schedChanged(); });
      ui["sched-preset"].addEventListener("change", () => { sync(); presetToCron(); schedChanged(); });
      for (const k of ["sched-n", "sched-time"]) ui[k].addEventListener("input", () => { presetToCron(); schedChanged(); });
      for (const d of DAYS) ui["day-" + d].addEventListener("change", () => { presetToCron(); schedChanged(); });
      ui["job-schedule"].addEventListener("input", () => { ui["sched-preset"].value = "custom"; sync(); schedChanged(); });
      for (const k of ["job-timezone", "sched-every", "sched-at"]) ui[k].addEventListener("input", schedChanged);
      ui["job-timezone"].addEventListener("change", schedChanged);
      ui["action-kind"].addEventListener("change", sync);

      const save = h("button", { class: "pri", testid: "job-save", type: "submit" }, mode === "edit" ? "Save changes" : "Create job");
      const test = h("button", { testid: "job-test", type: "button", onclick: async () => {
        clearErrors();
        testOut.textContent = "Sending…";
        testOut.className = "";
        try {
          const v = await api("POST", "/api/v1/jobs/test", { action: action(), timeout: ui["job-timeout"].value.trim() });
          testOut.textContent = v.ok ? "Sent: the webhook answered HTTP " + v.status + "." : "Not sent: " + (v.error || "HTTP " + v.status);
          testOut.className = v.ok ? "succeeded" : "failed";
        } catch (e) {
          testOut.textContent = "";
          showError(e);
        }
      } }, "Send a test now");
      const form = h("form", { novalidate: true, onsubmit: async (ev) => {
        ev.preventDefault();
        clearErrors();
        save.disabled = true;
        try {
          const s = spec();
          const v = mode === "edit"
            ? await api("PATCH", "/api/v1/jobs/" + encodeURIComponent(id), s)
            : await api("POST", "/api/v1/jobs", s);
          flash((mode === "edit" ? "Saved " : "Created ") + v.name + ".");
          location.hash = "#/job/" + v.id;
        } catch (e) {
          const tid = showError(e);
          if (tid) ui[tid].focus();
          flash("Not saved: " + e.message, true);
          refreshHealth();
        } finally {
          save.disabled = false;
        }
      } },
        field("job-name", "Name", ui["job-name"]),
        h("fieldset", null, h("legend", { text: "When" }),
          field("sched-kind", "Kind", ui["sched-kind"]), cronBox, everyBox, atBox,
          field("job-timezone", "Time zone", ui["job-timezone"]),
          h("h3", { text: "Next 5 times" }), preview),
        h("fieldset", null, h("legend", { text: "What" }),
          field("action-kind", "Action", ui["action-kind"]), hookBox, handlerBox),
        h("details", { testid: "advanced" }, h("summary", { text: "Advanced: retries and misfires" }),
          field("retry-attempts", "Attempts (first try included)", ui["retry-attempts"]),
          field("retry-backoff", "Backoff before a retry (doubles each time)", ui["retry-backoff"]),
          field("job-timeout", "Timeout per attempt", ui["job-timeout"]),
          field("misfire-grace", "Misfire grace (how late a fire may still run)", ui["misfire-grace"]),
          h("label", { class: "inline" }, ui["coalesce"], "Coalesce missed fires into one run")),
        formErr,
        h("div", null, test, save, h("a", { class: "btn", href: id ? "#/job/" + id : "#/jobs" }, "Cancel")),
        testOut);
      const title = mode === "edit" ? "Edit " + j.name : mode === "dup" ? "Duplicate " + j.name : "New job";
      clear(el, h("h2", { text: title }), form);
      sync();
      updatePreview();
    }
    return { el, start: build };
  }

  // ---- Handlers --------------------------------------------------------------------------
  function viewHandlers() {
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

  // ---- Members ---------------------------------------------------------------------------
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
  function viewMembers() {
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

  // ---- Audit -----------------------------------------------------------------------------
  function viewAudit() {
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

  // ---- Shell -----------------------------------------------------------------------------
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
})();
