// Filters of the results table: task substring and outcome. Reads data-* attributes
// only; never inserts HTML.
(function () {
  const table = document.getElementById("results");
  if (!table) return;
  const task = document.getElementById("filter-task");
  const outcome = document.getElementById("filter-outcome");
  const count = document.getElementById("filter-count");
  function apply() {
    const wanted = task.value.trim().toLowerCase();
    const which = outcome.value;
    let shown = 0;
    for (const row of table.tBodies[0].rows) {
      const okTask = !wanted || row.dataset.task.toLowerCase().includes(wanted);
      const okOutcome = which === "all" || row.dataset.outcome === which;
      row.hidden = !(okTask && okOutcome);
      if (!row.hidden) shown += 1;
    }
    count.textContent = shown + " of " + table.tBodies[0].rows.length + " episodes";
  }
  task.addEventListener("input", apply);
  outcome.addEventListener("change", apply);
  apply();
})();

// Keyboard navigation between the steps of an episode: j / n next, k / p previous,
// g first, G last. The current step is outlined and named in the address (#step-N).
(function () {
  const steps = Array.from(document.querySelectorAll("section.step"));
  if (!steps.length) return;
  let current = steps.findIndex((s) => "#" + s.id === window.location.hash);
  function go(index) {
    current = Math.max(0, Math.min(steps.length - 1, index));
    steps.forEach((s, i) => s.classList.toggle("current", i === current));
    steps[current].scrollIntoView({ block: "start" });
    history.replaceState(null, "", "#" + steps[current].id);
  }
  if (current >= 0) go(current);
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest("input, select, textarea")) return;
    const moves = { j: 1, n: 1, k: -1, p: -1 };
    if (event.key in moves) go(current < 0 ? 0 : current + moves[event.key]);
    else if (event.key === "g") go(0);
    else if (event.key === "G") go(steps.length - 1);
    else return;
    event.preventDefault();
  });
})();
