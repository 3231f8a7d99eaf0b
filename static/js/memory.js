// The memory page: short confirmations sent by the server in HX-Trigger ("memory-message").
(function () {
  document.body.addEventListener("memory-message", function (event) {
    const box = document.getElementById("memory-message");
    if (box) box.textContent = event.detail.value || "";
  });
})();
