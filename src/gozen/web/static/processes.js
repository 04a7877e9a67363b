// Process monitor: refresh the host sections in place and send start/stop/restart.
(function () {
  const hosts = document.getElementById("hosts");
  const message = document.getElementById("message");
  const refreshMs = 1000 * parseFloat(hosts.dataset.refreshS || "5");
  if (hosts.dataset.canAct !== "yes") document.body.classList.add("cannot-act");

  function say(text, bad) {
    message.textContent = text;
    message.className = "message" + (bad ? " bad" : "");
    message.hidden = false;
  }

  async function refresh() {
    const open = new Set([...hosts.querySelectorAll("details[open]")].map((d) => d.id));
    try {
      const r = await fetch("/processes/fragment", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      hosts.innerHTML = await r.text();
      open.forEach((id) => { const d = document.getElementById(id); if (d) d.open = true; });
      document.getElementById("updated").textContent = window.gozen.when(new Date().toISOString(), "time");
    } catch (e) {
      say("Could not refresh: " + e.message, true);
    }
  }

  hosts.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button.act");
    if (!btn) return;
    const host = btn.closest("section.host").dataset.host;
    const program = btn.closest("tr").dataset.program;
    const action = btn.dataset.action;
    btn.disabled = true;
    say(`${action} ${host}:${program} …`);
    const r = await fetch(`/api/processes/${encodeURIComponent(host)}/${encodeURIComponent(program)}/${action}`,
                          { method: "POST", credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login?next=/"; return; }
    const body = await r.json().catch(() => ({}));
    if (r.ok) say(`${action} ${host}:${program}: done`);
    else say(`${action} ${host}:${program}: ${body.detail || body.error || r.status}`, true);
    await refresh();
  });

  setInterval(refresh, refreshMs);
})();
