// The import job screen: poll the job's JSON status and move the progress bar.
// Without JavaScript the page works the same with its Refresh link.
(function () {
  "use strict";
  var panel = document.getElementById("import-status");
  if (!panel || panel.dataset.finished === "1") return;
  var bar = document.getElementById("import-progress");
  var refresh = document.getElementById("import-refresh");

  function show(name, value) {
    var el = panel.querySelector('[data-field="' + name + '"]');
    if (el) el.textContent = value === null || value === undefined ? "—" : String(value);
  }

  function poll() {
    fetch(panel.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
      .then(function (status) {
        if (status.percent !== null) bar.value = status.percent;
        show("percent", status.percent);
        show("rows_done", status.rows_done);
        show("rows_total", status.rows_total === null ? "?" : status.rows_total);
        ["created", "updated", "failed", "state_label"].forEach(function (name) { show(name, status[name]); });
        if (status.error) {
          var error = panel.querySelector('[data-field="error"]');
          error.textContent = status.error;
          error.hidden = false;
        }
        if (status.finished) {
          panel.dataset.finished = "1";
          // The refused rows listed below are those of the last page load: load it once more.
          if (status.failed > 0) { window.location.reload(); return; }
          if (refresh) refresh.remove();  // (a .button's display would win over `hidden`)
          return;
        }
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 500);
})();
