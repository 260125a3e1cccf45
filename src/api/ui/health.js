// Server health: the banner above every view.
import { h, clear, $ } from "./dom.js";
import { api } from "./api.js";
import { S, may } from "./state.js";

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
export async function refreshHealth() {
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
