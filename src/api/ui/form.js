// The job form: new (#/new), edit (#/edit/ID) and duplicate (#/dup/ID).
import { h, clear, $, flash, field } from "./dom.js";
import { api } from "./api.js";
import { S } from "./state.js";
import { when } from "./format.js";
import { refreshHealth } from "./health.js";
import { DAYS, zones, browserZone, zonedToInstant, instantToZoned, sameTrigger, inputFor } from "./jobspec.js";

export function viewForm(mode, id) {
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
      const tid = inputFor(e.field, ui["sched-kind"].value);
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
