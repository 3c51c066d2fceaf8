// Progressive enhancement only: every page works without this file.
// INS fields (data-ins): the 2-digit control key is checked as the person types
// (key = 97 - (13-digit number mod 97); Corsica 2A counts as 19, 2B as 18).
// The server checks it again; this only spares a round trip.
(function () {
  "use strict";
  function expectedKey(matricule) {
    var m = matricule.toUpperCase();
    if (m.slice(5, 7) === "2A") { m = m.slice(0, 5) + "19" + m.slice(7); }
    else if (m.slice(5, 7) === "2B") { m = m.slice(0, 5) + "18" + m.slice(7); }
    if (!/^\d{13}$/.test(m)) { return null; }
    return 97 - Number(BigInt(m) % 97n);
  }
  function check(input) {
    var out = document.getElementById("etat-ins");
    if (!out) { return; }
    var value = input.value.replace(/\s+/g, "").toUpperCase();
    if (value.indexOf("|") >= 0) { value = value.split("|").pop(); }
    if (value.length === 0) { out.textContent = ""; input.removeAttribute("aria-invalid"); return; }
    if (value.length < 15) {
      out.textContent = "Encore " + (15 - value.length) + " caractère(s).";
      input.removeAttribute("aria-invalid");
      return;
    }
    var key = expectedKey(value.slice(0, 13));
    var ok = value.length === 15 && key !== null && Number(value.slice(13)) === key && /^\d{2}$/.test(value.slice(13));
    out.textContent = ok ? "Clé de contrôle correcte." : "La clé de contrôle ne correspond pas : vérifiez la saisie.";
    out.className = ok ? "etat correct" : "etat incorrect";
    if (ok) { input.removeAttribute("aria-invalid"); } else { input.setAttribute("aria-invalid", "true"); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var fields = document.querySelectorAll("input[data-ins]");
    for (var i = 0; i < fields.length; i++) {
      fields[i].addEventListener("input", function (e) { check(e.target); });
    }
  });
})();
