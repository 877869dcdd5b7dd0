// Sortable tables (class "sortable"): a click on a header sorts by that column, again to reverse. Numbers sort as
// numbers ("—" last); the cells' text is only compared, never parsed as HTML.
(function () {
  "use strict";
  document.querySelectorAll("table.sortable").forEach((table) => {
    table.querySelectorAll("thead th").forEach((th, col) => {
      th.style.cursor = "pointer";
      th.addEventListener("click", () => {
        const asc = th.dataset.sorted !== "asc";
        table.querySelectorAll("thead th").forEach((h) => delete h.dataset.sorted);
        th.dataset.sorted = asc ? "asc" : "desc";
        const number = th.dataset.type === "number";
        const key = (tr) => {
          const text = tr.children[col].textContent.trim();
          if (!number) return text.toLowerCase();
          const n = parseFloat(text);
          return Number.isNaN(n) ? null : n;
        };
        const rows = [...table.tBodies[0].rows];
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          if (x === y) return 0;
          if (x === null) return 1;
          if (y === null) return -1;
          return (x < y ? -1 : 1) * (asc ? 1 : -1);
        });
        rows.forEach((r) => table.tBodies[0].append(r));
      });
    });
  });
})();
