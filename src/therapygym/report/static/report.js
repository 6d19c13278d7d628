/* therapygym report and viewer: open and mark the element a link points at (a session,
   a turn cited as evidence, a judge's rating), and filter the sessions table. No network,
   no dependencies; the page works without it except for these two conveniences. */
(function () {
  "use strict";

  function reveal() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    if (!target) {
      return;
    }
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") {
        node.open = true;
      }
    }
    var previous = document.querySelectorAll(".active");
    for (var i = 0; i < previous.length; i++) {
      previous[i].classList.remove("active");
    }
    target.classList.add("active");
    target.scrollIntoView({ block: "center" });
  }

  function filterSessions(form) {
    var table = document.getElementById(form.getAttribute("data-table"));
    if (!table) {
      return;
    }
    var wanted = {};
    var selects = form.querySelectorAll("select");
    for (var i = 0; i < selects.length; i++) {
      wanted[selects[i].name] = selects[i].value;
    }
    var rows = table.querySelectorAll("tbody tr");
    var shown = 0;
    for (var r = 0; r < rows.length; r++) {
      var row = rows[r];
      var violated = (row.getAttribute("data-violated") || "").split(" ");
      var ok =
        (!wanted.therapist || row.getAttribute("data-therapist") === wanted.therapist) &&
        (!wanted.patient || row.getAttribute("data-patient") === wanted.patient) &&
        (!wanted.status || row.getAttribute("data-status") === wanted.status) &&
        (!wanted.label ||
          (wanted.label === "any" ? violated[0] !== "" : violated.indexOf(wanted.label) >= 0));
      row.hidden = !ok;
      shown += ok ? 1 : 0;
    }
    var count = form.querySelector(".shown");
    if (count) {
      count.textContent = shown + " of " + rows.length + " sessions";
    }
  }

  function init() {
    var forms = document.querySelectorAll("form.client-filter");
    for (var i = 0; i < forms.length; i++) {
      (function (form) {
        form.addEventListener("change", function () {
          filterSessions(form);
        });
        form.addEventListener("submit", function (event) {
          event.preventDefault();
          filterSessions(form);
        });
      })(forms[i]);
    }
    reveal();
  }

  window.addEventListener("hashchange", reveal);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
