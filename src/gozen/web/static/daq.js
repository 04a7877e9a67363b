// The DAQ page's focal-plane map: hovering a chip shows its numbers in the panel, a click (or
// Enter) keeps them there; the kept chip is in the address (#det=111), so it stays across reloads.
(function () {
  const map = document.getElementById("focal-plane");
  if (!map) return;
  const cards = document.querySelectorAll("#chip-panel [data-card]");
  const hint = document.getElementById("chip-hint");
  let kept = null;

  function show(det) {
    cards.forEach((c) => { c.hidden = c.dataset.card !== det; });
    hint.hidden = Boolean(det);
  }
  function keep(det) {
    kept = det;
    map.querySelectorAll(".chip").forEach((g) => g.classList.toggle("selected", g.dataset.det === det));
    history.replaceState(null, "", det ? "#det=" + det : location.pathname + location.search);
    show(det);
  }
  const chipOf = (ev) => (ev.target instanceof Element ? ev.target.closest(".chip") : null);

  map.addEventListener("click", (ev) => { const g = chipOf(ev); if (g) keep(g.dataset.det); });
  map.addEventListener("keydown", (ev) => {
    const g = chipOf(ev);
    if (g && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); keep(g.dataset.det); }
  });
  map.addEventListener("mouseover", (ev) => { const g = chipOf(ev); show(g ? g.dataset.det : kept); });
  map.addEventListener("mouseleave", () => show(kept));
  const asked = location.hash.match(/^#det=(\d+)$/);
  if (asked) keep(asked[1]);
})();
