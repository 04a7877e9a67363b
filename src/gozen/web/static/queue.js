// The Queue page: refresh the queue in place every data-refresh-s seconds (a recipe being typed is
// kept, which a full reload would lose) and, for operators, send the queue's actions and recipes.
// The server renders the controls for operators only; for anyone else there is nothing to click.
(function () {
  const live = document.getElementById("queue-live");
  const message = document.getElementById("message");
  const form = document.getElementById("submit-form");
  const plan = document.querySelector("#plan img");
  const refreshMs = 1000 * (parseFloat(live.dataset.refreshS || "5") || 5);
  let latest = 0; // the newest refresh asked for: an older answer arriving late is dropped
  let refreshFailed = false;

  function say(text, bad) {
    message.textContent = text;
    message.className = "message" + (bad ? " bad" : "");
    message.hidden = false;
  }

  async function refresh() {
    const mine = ++latest;
    try {
      const r = await fetch("/queue/fragment", { cache: "no-store", credentials: "same-origin" });
      if (!r.ok) throw new Error(r.status === 503 ? "the database is not answering" : "HTTP " + r.status);
      const html = await r.text();
      if (mine !== latest) return;
      live.innerHTML = html;
      if (refreshFailed) { refreshFailed = false; message.hidden = true; }
    } catch (e) {
      if (mine !== latest) return;
      refreshFailed = true;
      say("Could not refresh the queue: " + e.message, true);
    }
  }

  function refreshPlan() {
    if (plan) plan.src = "/queue/plan.svg?at=" + Date.now();
  }

  async function post(url, init) {
    const r = await fetch(url, Object.assign({ method: "POST", credentials: "same-origin" }, init || {}));
    if (r.status === 401) { location.href = "/login?next=/queue"; return null; }
    return { ok: r.ok, status: r.status, body: await r.json().catch(() => ({})) };
  }

  const QUEUE_ACTIONS = {
    pause: ["/api/queue/pause", () => "queue paused"],
    resume: ["/api/queue/resume", () => "queue resumed"],
    maintenance: ["/api/queue/mode/maintenance", () => "queue in maintenance: nothing new starts"],
    normal: ["/api/queue/mode/normal", () => "queue back to normal"],
    abort: ["/api/queue/abort", () => "abort asked of the executing recipe"],
  };

  function request(btn) {
    const action = btn.dataset.action;
    if (QUEUE_ACTIONS[action]) return QUEUE_ACTIONS[action];
    const row = btn.closest("tr[data-uuid]");
    const uuid = encodeURIComponent(row.dataset.uuid);
    const name = row.querySelector("td.name").textContent;
    if (action === "cancel") return [`/api/recipes/${uuid}/cancel`, (b) => `${name}: ${b.result}`];
    if (action === "move-up") return [`/api/recipes/${uuid}/move-up`, (b) => `${name} moved up: now ${b.priority}`];
    return null;
  }

  function confirmed(btn) {
    const action = btn.dataset.action;
    if (action === "abort") return window.confirm(`Abort the executing recipe ${btn.dataset.name}?`);
    if (action === "cancel") return window.confirm(`Cancel ${btn.dataset.name}? It leaves the queue.`);
    return true;
  }

  live.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (!btn) return;
    const req = request(btn);
    if (!req || !confirmed(btn)) return;
    btn.disabled = true;
    say(btn.textContent.trim() + " …");
    try {
      const got = await post(req[0]);
      if (!got) return;
      if (got.ok) say(req[1](got.body));
      else say(`${btn.textContent.trim()}: ${got.body.detail || got.body.error || "HTTP " + got.status}`, true);
    } catch (e) {
      say(`${btn.textContent.trim()}: ${e.message}`, true);
    }
    await refresh();
    if (["cancel", "move-up"].includes(btn.dataset.action)) refreshPlan();
  });

  if (form) {
    const text = document.getElementById("recipe-text");
    const result = document.getElementById("submit-result");
    const errors = document.getElementById("recipe-errors");
    const button = document.getElementById("submit-recipe");

    // "steps[0].expose.frames: must be >= 1, got 0": the field's path set apart from the problem.
    function showErrors(lines) {
      errors.replaceChildren(...lines.map((line) => {
        const li = document.createElement("li");
        const m = line.match(/^([\w.\[\]-]+): (.*)$/s);
        if (m) {
          const path = document.createElement("code");
          path.className = "path";
          path.textContent = m[1];
          li.append(path, ": " + m[2]);
        } else {
          li.textContent = line;
        }
        return li;
      }));
      errors.hidden = lines.length === 0;
    }

    text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); }
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = text.value;
      const type = /^\s*[{[]/.test(body) ? "application/json" : "application/yaml";
      button.disabled = true;
      result.textContent = "submitting …";
      result.className = "";
      try {
        const got = await post("/api/recipes", { headers: { "Content-Type": type }, body: body });
        if (!got) return;
        if (got.status === 201) {
          result.textContent = `queued ${got.body.name} (${got.body.uuid})`;
          result.className = "ok";
          showErrors([]);
          text.value = "";
          await refresh();
          refreshPlan();
        } else {
          result.textContent = got.status === 422 ? "not queued: fix these fields" : "not queued";
          result.className = "bad";
          showErrors(got.body.errors || [got.body.detail || got.body.error || "HTTP " + got.status]);
        }
      } catch (e) {
        result.textContent = "not queued: " + e.message;
        result.className = "bad";
      } finally {
        button.disabled = false;
      }
    });
  }

  (function tick() { setTimeout(() => refresh().finally(tick), refreshMs); })();
})();
