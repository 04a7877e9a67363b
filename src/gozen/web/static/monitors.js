// The Monitors page: the range buttons change the plots in place (the URL keeps the choice, so a
// reload shows the same range) and the page refreshes its body every data-refresh-s seconds.
(function () {
  const body = () => document.getElementById("monitor-body");
  let timer = null;
  let wanted = null; // the range asked for last; a slower answer for another range is dropped

  async function load(range) {
    const url = new URL(location.href);
    if (range) url.searchParams.set("range", range);
    wanted = url.searchParams.get("range");
    document.body.classList.add("loading");
    try {
      const r = await fetch(url, { headers: { Accept: "text/html" } });
      if (!r.ok || url.searchParams.get("range") !== wanted) return;
      const fresh = new DOMParser().parseFromString(await r.text(), "text/html").getElementById("monitor-body");
      if (!fresh) return;
      body().replaceWith(document.adoptNode(fresh));
      if (range) history.replaceState(null, "", url);
    } catch (err) {
      // the server is restarting or the network is down: try again at the next refresh
    } finally {
      document.body.classList.remove("loading");
      schedule();
    }
  }

  function schedule() {
    clearTimeout(timer);
    const s = parseFloat((body() || document.body).dataset.refreshS || "");
    if (s > 0) timer = setTimeout(() => load(null), 1000 * Math.max(s, 10)); // plots move by a slice (12 s at 1 h)
  }

  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("#ranges a[data-range]");
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    ev.preventDefault();
    load(a.dataset.range);
  });
  schedule();
})();
