// tollgate admin console: refreshes the live call count per trunk every 2 s from GET /api/trunks (same
// origin, session cookie). Everything else on the page is plain HTML forms, so the console works without it.
"use strict";
(function () {
  const table = document.getElementById("trunks");
  if (!table) return;
  async function refresh() {
    try {
      const r = await fetch("/api/trunks", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { window.location.assign("/login"); return; }
      if (!r.ok) return;
      for (const t of await r.json()) {
        const row = table.querySelector('tr[data-trunk="' + CSS.escape(t.name) + '"]');
        if (!row) continue;
        const cells = row.querySelectorAll("td");
        cells[1].textContent = t.active_calls === null ? "\u2014" : String(t.active_calls);
        cells[2].textContent = t.max_calls === null ? "\u2014" : String(t.max_calls);
      }
      table.dataset.updated = String(Date.now());
    } catch (e) {
      // The appliance restarting or the network blinking: try again at the next tick.
    }
  }
  setInterval(refresh, 2000);
  refresh();
})();
