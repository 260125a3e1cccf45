// The dashboard's loader guard: a classic script, run before the entry module. If the entry
// module or any module it imports fails to load (a phone that changes network while the page
// loads, a tunnel that drops for a moment), the browser fires "error" at the module's script
// element and nothing else runs: without this, the page would say "Loading…" for ever. It reloads
// once by itself; if that fails too, it says what happened and offers a button that tries again.
(function () {
  "use strict";
  var KEY = "appliance-boot-retry";
  // The entry's element is parsed after this script runs, and "error" does not bubble: listen
  // on the document in the capture phase, for that element only.
  document.addEventListener("error", function (e) {
    if (!e.target || e.target.id !== "entry") return;
    // A browser that refuses session storage gets the message at once: without a record of
    // the retry, reloading could go on for ever.
    var retry = false;
    try {
      retry = Date.now() - Number(sessionStorage.getItem(KEY) || 0) > 30000;
      if (retry) sessionStorage.setItem(KEY, String(Date.now()));
    } catch (err) {
      retry = false;
    }
    if (retry) {
      setTimeout(function () { location.reload(); }, 1000);
      return;
    }
    var main = document.getElementById("main");
    var p = document.createElement("p");
    p.className = "err";
    p.setAttribute("data-testid", "boot-failed");
    p.textContent = "The dashboard did not load: the connection to the appliance dropped while " +
      "the page was loading (a phone changing network does this). Check that the WireGuard " +
      "tunnel is on, then try again.";
    var b = document.createElement("button");
    b.type = "button";
    b.setAttribute("data-testid", "boot-retry");
    b.textContent = "Try again";
    b.addEventListener("click", function () {
      try { sessionStorage.removeItem(KEY); } catch (err) { /* nothing recorded */ }
      location.reload();
    });
    main.replaceChildren(p, b);
    document.getElementById("who").textContent = "Not loaded.";
  }, true);
})();
