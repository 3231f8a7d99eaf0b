// The evaluations page's chart (Chart.js, vendored): one line per brief version, from the
// page's json_script block (the same numbers as the table below it).
(function () {
  const COLOURS = ["#4f46e5", "#12b76a", "#b54708", "#d92d20", "#0e9384", "#98a2b3"];
  function draw() {
    const source = document.getElementById("eval-chart-data");
    const canvas = document.getElementById("eval-chart");
    if (!source || !canvas || typeof Chart === "undefined") return;
    const data = JSON.parse(source.textContent);
    new Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (series, n) {
          const colour = COLOURS[n % COLOURS.length];
          return { label: series.label, data: series.data, borderColor: colour, backgroundColor: colour, spanGaps: true, pointRadius: 4, clip: false };  // a 100% point is not cut in half
        }),
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: { y: { min: 0, max: 100, title: { display: true, text: "Passed (%)" } }, x: { ticks: { autoSkip: true, maxRotation: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      },
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
})();
