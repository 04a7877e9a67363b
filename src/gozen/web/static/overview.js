// The overview: fetch the tiles (/overview/fragment) every data-refresh-s seconds and put them in
// place, without a reload. The mosaic's <img> is kept when it shows the same exposure, so it does
// not flash; a refresh that fails says so and the next one tries again.
(function () {
  const live = document.getElementById("overview");
  const message = document.getElementById("message");
  const refreshMs = 1000 * (parseFloat(live.dataset.refreshS || "5") || 5);
  let latest = 0; // the newest refresh asked for: an older answer arriving late is dropped

  async function refresh() {
    const mine = ++latest;
    try {
      const r = await fetch("/overview/fragment", { cache: "no-store", credentials: "same-origin" });
      if (!r.ok) throw new Error(r.status === 503 ? "the database is not answering" : "HTTP " + r.status);
      const html = await r.text();
      if (mine !== latest) return;
      const oldMosaic = document.getElementById("mosaic");
      const next = document.createElement("div");
      next.innerHTML = html;
      const newMosaic = next.querySelector("#mosaic");
      if (oldMosaic && newMosaic && oldMosaic.getAttribute("src") === newMosaic.getAttribute("src")) {
        newMosaic.replaceWith(oldMosaic);
      }
      live.replaceChildren(...next.childNodes);
      live.dataset.refreshed = String((parseInt(live.dataset.refreshed || "0", 10) || 0) + 1);
      message.hidden = true;
    } catch (e) {
      if (mine !== latest) return;
      message.textContent = "Could not refresh: " + e.message + " (trying again)";
      message.hidden = false;
    }
  }

  setInterval(refresh, refreshMs);
})();
