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
