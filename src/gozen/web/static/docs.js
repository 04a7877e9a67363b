// /api/docs: start Swagger UI (served by the app from the swagger-ui-bundle package) on the
// app's OpenAPI document. A static file: the Content-Security-Policy allows no inline script.
// The packaged Swagger UI (4.x) reads OpenAPI 3.0 and refuses FastAPI's "3.1.0" outright, though
// it draws the document well: it is given the document with its version read as 3.0.
(function () {
  const root = document.getElementById("swagger-ui");
  function start(spec) {
    window.ui = SwaggerUIBundle({
      spec: spec,
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      deepLinking: true,
      validatorUrl: null, // the public validator is on the internet: never asked
    });
  }
  fetch(root.dataset.openapiUrl, { credentials: "same-origin" })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then((spec) => { if (/^3\.1\./.test(spec.openapi || "")) spec.openapi = "3.0.3"; start(spec); })
    .catch((e) => { root.textContent = "Could not read the API description: " + e.message; });
})();
