// The hire form: cron presets, focus on the new step after a swap, a live budget check.
(function () {
  "use strict";
  var lastStep = null;

  document.addEventListener("click", function (event) {
    var chip = event.target.closest("[data-cron]");
    if (!chip) return;
    var row = chip.closest(".duty-row");
    var input = row && row.querySelector(".cron-input");
    if (!input) return;
    input.value = chip.dataset.cron;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.focus();
  });

  function checkBudgets(form) {
    var task = form.querySelector("[name=max_cost_per_task]");
    var day = form.querySelector("[name=max_cost_per_day]");
    var note = form.querySelector("[data-budget-check]");
    if (!task || !day || !note) return;
    var over = task.value !== "" && day.value !== "" && Number(task.value) > Number(day.value);
    note.classList.toggle("field-error", over);
    note.textContent = over
      ? "The most a task may cost ($" + task.value + ") is more than the daily ceiling ($" + day.value + "): lower it or raise the daily ceiling."
      : "A task's ceiling cannot be more than the day's.";
  }

  document.addEventListener("input", function (event) {
    var form = event.target.closest("#wizard");
    if (form && /^max_cost_per_/.test(event.target.name || "")) checkBudgets(form);
  });

  document.addEventListener("htmx:afterSettle", function () {
    var form = document.getElementById("wizard");
    if (!form) return;
    var step = form.dataset.step;
    if (step !== lastStep) {
      // A new step: bring it into view and move focus to its heading (or the error list).
      var target = document.getElementById("wizard-errors") || form.querySelector(".step-title");
      form.scrollIntoView({ block: "start" });
      if (target) target.focus({ preventScroll: true });
    }
    lastStep = step;
    checkBudgets(form);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("wizard");
    if (form) lastStep = form.dataset.step;
  });
})();
