// The dashboard's charts (Chart.js, vendored under static/vendor/chart.js/). The numbers come
// from the page's json_script block, the same ones its tables show; an htmx swap of the figures
// (period or scope switch) brings a new block, and the charts are drawn again from it.
(function () {
  const COLOURS = {
    done: "#12b76a",
    failed: "#d92d20",
    cancelled: "#98a2b3",
    spent: "#4f46e5",
    budget: "#b54708",
  };
  let charts = [];

  function money(value) {
    return "$" + Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 });
  }

  function outcomeSets(data) {
    return ["done", "failed", "cancelled"].map(function (key) {
      return {
        type: "bar",
        label: key.charAt(0).toUpperCase() + key.slice(1),
        data: data[key],
        backgroundColor: COLOURS[key],
        stack: "outcomes",
        yAxisID: "y",
      };
    });
  }

  function drawDays(canvas, data) {
    const sets = outcomeSets(data);
    sets.push({
      type: "line", label: "Spent", data: data.spent, borderColor: COLOURS.spent,
      backgroundColor: COLOURS.spent, yAxisID: "money", tension: 0.2, pointRadius: 3,
    });
    if (data.budget > 0) {
      sets.push({
        type: "line", label: "Daily budgets", data: data.labels.map(function () { return data.budget; }),
        borderColor: COLOURS.budget, borderDash: [6, 4], pointRadius: 0, yAxisID: "money", fill: false,
      });
    }
    return new Chart(canvas, {
      data: { labels: data.labels, datasets: sets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, ticks: { autoSkip: true, maxRotation: 0 } },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: "Tasks" }, ticks: { precision: 0 } },
          money: {
            position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
            title: { display: true, text: "Spent" }, ticks: { callback: money },
          },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (item) {
                const value = item.dataset.yAxisID === "money" ? money(item.raw) : item.raw;
                return item.dataset.label + ": " + value;
              },
            },
          },
        },
      },
    });
  }

  function drawEmployees(canvas, data) {
    return new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: outcomeSets(data) },
      options: {
        indexAxis: "y", responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      },
    });
  }

  function draw(root) {
    const source = root.querySelector && root.querySelector("#dashboard-chart-data");
    if (!source || typeof Chart === "undefined") return;
    // Charts of figures that were swapped out: their canvases are gone from the page.
    charts = charts.filter(function (chart) {
      if (chart.canvas.isConnected) return true;
      chart.destroy();
      return false;
    });
    const data = JSON.parse(source.textContent);
    const days = document.getElementById("chart-days");
    const employees = document.getElementById("chart-employees");
    // A canvas drawn already (htmx:load for the page, then for a part of it) keeps its chart.
    if (days && !Chart.getChart(days)) charts.push(drawDays(days, data.days));
    if (employees && !Chart.getChart(employees)) charts.push(drawEmployees(employees, data.employees));
  }

  // Scope: a team or one employee, never both (an employee of another team would not be found).
  // Caught on the way down (capture), so the other select is cleared before htmx sends the form;
  // on the document, so it survives htmx restoring the page from its history.
  document.addEventListener("change", function (event) {
    const select = event.target;
    const form = select.closest && select.closest("#kpi-filters");
    if (!form) return;
    if (select.name === "team") form.querySelector("select[name=employee]").value = "";
    if (select.name === "employee" && select.value) form.querySelector("select[name=team]").value = "";
  }, true);

  htmx.onLoad(draw);
})();
