// Keyboard shortcuts for the approval inbox: j/k move, a approve, r reject, e edit, x select.
(function () {
  function rows() { return Array.from(document.querySelectorAll("#inbox-list .approval-row")); }
  function current() { return document.activeElement && document.activeElement.closest(".approval-row"); }
  function move(step) {
    const list = rows();
    if (!list.length) return;
    const index = list.indexOf(current());
    const next = list[Math.min(list.length - 1, Math.max(0, index + step))] || list[0];
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target.matches("input, textarea, select")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    const row = current();
    const click = function (selector) { const el = row && row.querySelector(selector); if (el && !el.disabled) el.click(); };
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a": click("button.approve"); break;
      case "e": click("button.edit"); break;
      case "x": click("input[type=checkbox]"); break;
      case "r": {
        const reason = row && row.querySelector("input[name=reason]");
        if (reason) { event.preventDefault(); reason.focus(); }
        break;
      }
      default: return;
    }
  });
  // In the reason field, Enter rejects.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.matches(".reject-group input[name=reason]")) {
      event.preventDefault();
      event.target.parentElement.querySelector("button.reject").click();
    }
  });
  // After a swap, keep the keyboard where the person was.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.classList && event.detail.target.classList.contains("approval-row")) {
      const row = document.getElementById(event.detail.target.id) || event.detail.elt;
      if (row && row.focus) row.focus();
    }
  });
  document.body.addEventListener("inbox-message", function (event) {
    const box = document.getElementById("inbox-message");
    if (box) box.textContent = event.detail.value || "";
  });
})();
