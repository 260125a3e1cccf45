// The job form's pure parts: wall-clock times in a time zone, and which input an API error's
// field names.
export const DAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
export function zones() {
  let z = [];
  try { z = Intl.supportedValuesOf("timeZone"); } catch (_) { z = []; }
  if (!z.includes("UTC")) z = ["UTC"].concat(z);
  return z;
}
export function browserZone() {
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
export function zonedToInstant(local, tz) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local || "");
  if (!m) return local || "";
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  let t = wall;
  for (let i = 0; i < 3; i++) t = wall - offsetAt(t, tz);
  return new Date(t).toISOString().replace(".000Z", "Z");
}
export function instantToZoned(iso, tz) {
  const p = partsIn(new Date(iso).getTime(), tz);
  const d = (n) => String(n).padStart(2, "0");
  return p.year + "-" + d(p.month) + "-" + d(p.day) + "T" + d(p.hour % 24) + ":" + d(p.minute);
}

// Whether the trigger `a` built from the form is the stored trigger `b`.
export function sameTrigger(a, b) {
  if (!b) return false;
  if (a.cron !== undefined) return a.cron === b.cron && a.timezone === (b.timezone || "UTC");
  if (a.every !== undefined) return a.every === b.every;
  return a.at !== undefined && b.at !== undefined && new Date(a.at).getTime() === new Date(b.at).getTime();
}

// The form input (its test id) that an API error's `field` names; `kind` is the schedule kind.
const FIELDS = [
  ["name", "job-name"], ["trigger.cron", "job-schedule"], ["trigger.timezone", "job-timezone"],
  ["trigger.every", "sched-every"], ["trigger.at", "sched-at"], ["action.webhook.url", "job-webhook-url"],
  ["action.webhook.body", "job-message"], ["action.handler.id", "handler-id"], ["action.handler.method", "handler-method"],
  ["action.handler.params", "handler-params"], ["action.handler", "handler-id"], ["action", "job-webhook-url"],
  ["retry.attempts", "retry-attempts"], ["retry.backoff", "retry-backoff"], ["timeout", "job-timeout"],
  ["misfire_grace", "misfire-grace"], ["coalesce", "coalesce"]];
export function inputFor(f, kind) {
  if (!f) return null;
  if (f === "trigger" || f.startsWith("trigger.start") || f.startsWith("trigger.end")) {
    return { cron: "job-schedule", every: "sched-every", at: "sched-at" }[kind];
  }
  for (const [path, tid] of FIELDS) if (f === path || f.startsWith(path + ".")) return tid;
  return null;
}
