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
  colourBy();
})();

// "Colour chips by": the state (the legend's colours) or a quick-look number on a dark-to-bright ramp,
// chips without one pale. The choice is kept in this browser across the page's reloads.
function colourBy() {
  const map = document.getElementById("focal-plane");
  const select = document.getElementById("colour-by");
  const scale = document.getElementById("value-scale");
  const legend = document.getElementById("legend");
  if (!map || !select) return;
  const KEY = "gozen.daq.colourBy";
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];  // viridis
  const DIGITS = { sky: 1, noise: 2, stars: 0, fwhm: 2 };

  function ramp(t) {
    const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1), i = Math.min(RAMP.length - 2, Math.floor(x)), f = x - i;
    const rgb = RAMP[i].map((v, k) => Math.round(v + (RAMP[i + 1][k] - v) * f));
    return "rgb(" + rgb.join(", ") + ")";
  }
  function paint(what) {
    const chips = Array.from(map.querySelectorAll(".chip"));
    const byValue = what !== "state";
    map.classList.toggle("by-value", byValue);
    legend.hidden = byValue;
    scale.hidden = !byValue;
    const values = chips.map((g) => (byValue && g.dataset[what] !== undefined ? Number(g.dataset[what]) : null));
    const known = values.filter((v) => v !== null);
    const lo = Math.min(...known), hi = Math.max(...known);
    chips.forEach((g, n) => {
      const rect = g.querySelector("rect"), v = values[n];
      g.classList.toggle("no-value", byValue && v === null);
      rect.style.fill = byValue && v !== null ? ramp(hi > lo ? (v - lo) / (hi - lo) : 0.5) : "";
      g.dataset.value = byValue && v !== null ? String(v) : "";
    });
    if (byValue) {
      scale.querySelector("[data-min]").textContent = known.length ? lo.toFixed(DIGITS[what]) : "–";
      scale.querySelector("[data-max]").textContent = known.length ? hi.toFixed(DIGITS[what]) : "–";
      scale.querySelector("[data-none]").textContent =
        known.length + " chips with a quick look" + (known.length ? "" : " yet");
    }
  }
  select.addEventListener("change", () => {
    try { localStorage.setItem(KEY, select.value); } catch (e) { /* private mode: not kept */ }
    paint(select.value);
  });
  let kept = null;
  try { kept = localStorage.getItem(KEY); } catch (e) { /* private mode */ }
  if (kept && select.querySelector('option[value="' + kept + '"]')) select.value = kept;
  paint(select.value);
}
