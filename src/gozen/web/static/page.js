// Every page: reload itself every data-reload-s seconds (when set); drop plots that failed to load.
// A static file, not inline script: the Content-Security-Policy allows only the app's own scripts.
(function () {
  const reloadS = parseFloat(document.body.dataset.reloadS || "");
  if (reloadS > 0) setTimeout(() => location.reload(), 1000 * reloadS);

  const dropIfBroken = (img) => { if (img.hasAttribute("data-drop-if-broken")) img.remove(); };
  document.addEventListener("error", (ev) => {
    if (ev.target instanceof HTMLImageElement) dropIfBroken(ev.target);
  }, true);
  document.querySelectorAll("img[data-drop-if-broken]").forEach((img) => {
    if (img.complete && img.naturalWidth === 0) dropIfBroken(img);
  });
})();

// gozen.when(iso, style): "2026-11-26 12:00:05 UTC 21:00 JST", as the `when` template filter
// writes it (web/times.py); the site's zone is <body data-tz>. style: "datetime" or "time".
window.gozen = window.gozen || {};
window.gozen.when = function (iso, style) {
  if (!iso) return "–";
  const t = new Date(iso);
  if (isNaN(t)) return String(iso);
  const two = (n) => String(n).padStart(2, "0");
  const utcTime = `${two(t.getUTCHours())}:${two(t.getUTCMinutes())}:${two(t.getUTCSeconds())}`;
  const utcDate = `${t.getUTCFullYear()}-${two(t.getUTCMonth() + 1)}-${two(t.getUTCDate())}`;
  const tz = document.body.dataset.tz || "UTC";
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short",
  }).formatToParts(t);
  const part = (type) => (parts.find((p) => p.type === type) || {}).value || "";
  const local = `${part("hour")}:${part("minute")} ${document.body.dataset.tzAbbr || part("timeZoneName")}`;
  return `${style === "time" ? utcTime : utcDate + " " + utcTime} UTC ${local}`;
};
