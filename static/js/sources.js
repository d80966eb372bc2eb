/*
 * A remote source's line in the document list ("Henter fra …") asks for the source's
 * fragment with htmx. When that request fails (the portal answered an error, or the
 * network did not answer), htmx does nothing by itself: this says so on the line, in the
 * words the server rendered into data-failed-text, instead of leaving it spinning. No
 * inline script, no eval (CSP script-src 'self').
 */
(function () {
  "use strict";

  function failed(event) {
    var line = event.detail && event.detail.elt;
    if (!line || !line.dataset || !line.dataset.failedText) {
      return;
    }
    line.textContent = line.dataset.failedText;
    line.classList.remove("portal-source-loading");
    line.setAttribute("data-testid", "source-fetch-failed");
  }

  document.body.addEventListener("htmx:responseError", failed);
  document.body.addEventListener("htmx:sendError", failed);
})();
