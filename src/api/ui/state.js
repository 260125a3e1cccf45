// What the page shares between views: who the caller is, the handlers list, the current view
// and route, and what the caller's role may do.
export const S = { me: null, handlers: null, view: null, route: "" };
// What the caller may do is the server's route table for its role (GET /api/v1/whoami's
// "permitted": "METHOD /path" pairs); a control shows only when its route is listed. The API
// still checks every request.
export const may = (route) => !!S.me && Array.isArray(S.me.permitted) && S.me.permitted.includes(route);
export const canRead = () => may("GET /api/v1/jobs");
