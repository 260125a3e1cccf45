// Formatting: times, sizes, schedules and targets as plain text.
import { h } from "./dom.js";

function rel(ms) {
  const s = Math.round((ms - Date.now()) / 1000), a = Math.abs(s);
  const t = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min"
    : a < 86400 ? Math.round(a / 3600) + " h" : Math.round(a / 86400) + " d";
  return s >= 0 ? "in " + t : t + " ago";
}
export function when(iso, tz) {
  if (!iso) return "—";
  const d = new Date(iso);
  let txt;
  try {
    txt = d.toLocaleString(undefined, { timeZone: tz || undefined, weekday: "short", day: "numeric",
      month: "short", hour: "2-digit", minute: "2-digit", timeZoneName: tz ? "short" : undefined });
  } catch (_) { txt = d.toISOString(); }
  return txt + " (" + rel(d.getTime()) + ")";
}
export function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
export function schedule(t) {
  if (!t) return "";
  if (t.cron) return "cron " + t.cron + " (" + (t.timezone || "UTC") + ")";
  if (t.every) return "every " + t.every;
  if (t.at) return "once at " + when(t.at);
  return JSON.stringify(t);
}
export function target(a) {
  if (a && a.webhook) {
    try { return "webhook to " + new URL(a.webhook.url).host; } catch (_) { return "webhook"; }
  }
  if (a && a.handler) return "handler " + (a.handler.id || "") + " · " + (a.handler.method || "");
  return "";
}
export function statusEl(r) {
  if (!r) return h("span", { class: "mute", text: "never run" });
  return h("span", { class: r.status, text: r.status + (r.http_status ? " (HTTP " + r.http_status + ")" : "") });
}
