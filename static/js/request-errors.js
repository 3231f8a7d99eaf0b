// Every page: an htmx request the server refused with a plain-text reason (400, e.g. a field
// holding a NUL character) shows that reason, instead of nothing happening. htmx does not
// swap error responses, so without this the person would not know why the click did nothing.
(function () {
  document.body.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    const type = xhr.getResponseHeader("Content-Type") || "";
    const box = document.getElementById("request-error");
    if (!box || xhr.status !== 400 || !type.startsWith("text/plain")) return;
    box.textContent = xhr.responseText.slice(0, 1000);
    box.hidden = false;
  });
  document.body.addEventListener("htmx:beforeRequest", function () {
    const box = document.getElementById("request-error");
    if (box) box.hidden = true;
  });
})();
