// The office floor: after each refresh of #floor, tell screen readers the new counts, once.
// The desks themselves are aria-live="off" (they change every few seconds); the polite
// summary is only written when its text changes, so an unchanged floor is never re-announced.
document.addEventListener("htmx:afterSwap", (event) => {
  const floor = event.detail.target;
  if (!floor || floor.id !== "floor") return;
  const fresh = floor.querySelector("[data-summary]");
  const summary = document.getElementById("floor-summary");
  if (fresh && summary && summary.textContent !== fresh.dataset.summary) {
    summary.textContent = fresh.dataset.summary;
  }
});
