// Small progressive enhancements; every screen works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // A list row with data-href opens as its links do, wherever it is clicked (its date and name
  // stay the links a keyboard reaches); a click on a control, or to select text, is left alone.
  document.querySelectorAll("tr[data-href]").forEach(function (row) {
    row.addEventListener("click", function (event) {
      if (event.target.closest("a, button, input, select, textarea, label")) { return; }
      if (String(window.getSelection())) { return; }
      window.location.assign(row.getAttribute("data-href"));
    });
  });
  // The main menu: one list open at a time, closed by a click elsewhere or Escape.
  var menus = document.querySelectorAll(".mainnav details");
  menus.forEach(function (menu) {
    menu.addEventListener("toggle", function () {
      if (!menu.open) { return; }
      menus.forEach(function (other) { if (other !== menu) { other.open = false; } });
    });
  });
  document.addEventListener("click", function (event) {
    menus.forEach(function (menu) { if (!menu.contains(event.target)) { menu.open = false; } });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    menus.forEach(function (menu) {
      if (menu.open) { menu.open = false; menu.querySelector("summary").focus(); }
    });
  });
})();
