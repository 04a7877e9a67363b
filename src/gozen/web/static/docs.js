// /api/docs: start Swagger UI (served by the app from the swagger-ui-bundle package) on the
// app's OpenAPI document. A static file: the Content-Security-Policy allows no inline script.
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null, // the public validator is on the internet: never asked
  });
})();
