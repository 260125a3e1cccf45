// The one way to the appliance's JSON API: same-origin fetch, errors as Error with the
// server's message, field and code.
export async function api(method, path, body) {
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
