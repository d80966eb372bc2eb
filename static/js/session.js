/*
 * Idle-timeout warning. Configured by data attributes on #session-warning (rendered by
 * base.html for logged-in users only); no inline script, no eval (CSP script-src 'self').
 *
 * The script schedules itself from the idle timeout. Before showing the dialog it asks
 * the status endpoint how much time is really left (another tab may have kept the session
 * alive); that request carries X-PJD-Background: 1 and never counts as activity. "Fortsett"
 * POSTs to the keep-alive endpoint (with the CSRF token), which does count. When the time
 * is up the status endpoint answers 401, the server has ended the session, and the page
 * goes to the session-expired page.
 */
(function () {
  "use strict";

  var dialog = document.getElementById("session-warning");
  if (!dialog || !window.fetch) {
    return;
  }
  var data = dialog.dataset;
  var idleSeconds = Number(data.idleSeconds);
  var warningSeconds = Number(data.warningSeconds);
  var statusUrl = data.statusUrl;
  var keepaliveUrl = data.keepaliveUrl;
  var expiredUrl = data.expiredUrl;
  var countdown = dialog.querySelector("[data-session-countdown]");
  var continueButton = dialog.querySelector("[data-session-continue]");
  var closeButton = dialog.querySelector("[data-session-close]");
  var messages = dialog.querySelectorAll("[data-session-message]");

  var timer = null;
  var ticker = null;
  var deadline = 0; // ms since epoch, this browser's clock
  var absoluteDeadline = Date.now() + Number(data.absoluteRemaining) * 1000;
  var dismissedAbsolute = false;
  var leaving = false;

  function csrfToken() {
    try {
      var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      return headers["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }

  function expire() {
    if (leaving) {
      return;
    }
    leaving = true;
    clearTimeout(timer);
    clearInterval(ticker);
    window.location.assign(expiredUrl);
  }

  function formatSeconds(total) {
    var seconds = Math.max(0, Math.ceil(total));
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function updateCountdown() {
    if (countdown) {
      countdown.textContent = formatSeconds((deadline - Date.now()) / 1000);
    }
  }

  function show(limit) {
    var absolute = limit === "absolute";
    for (var i = 0; i < messages.length; i++) {
      messages[i].hidden = messages[i].getAttribute("data-session-message") !== limit;
    }
    if (continueButton) {
      continueButton.hidden = absolute;
    }
    if (closeButton) {
      closeButton.hidden = !absolute;
    }
    updateCountdown();
    clearInterval(ticker);
    ticker = setInterval(updateCountdown, 1000);
    if (!dialog.open) {
      if (typeof dialog.showModal === "function") {
        dialog.showModal();
      } else {
        dialog.setAttribute("open", "");
      }
    }
  }

  function hide() {
    clearInterval(ticker);
    if (dialog.open) {
      if (typeof dialog.close === "function") {
        dialog.close();
      } else {
        dialog.removeAttribute("open");
      }
    }
  }

  // Plan the next step from `remaining` seconds (the smaller of the idle and the
  // absolute limit) and which limit that is.
  function schedule(remaining, limit) {
    clearTimeout(timer);
    deadline = Date.now() + remaining * 1000;
    var showDialog = remaining <= warningSeconds + 1 && !(limit === "absolute" && dismissedAbsolute);
    if (showDialog) {
      show(limit);
    } else {
      hide();
    }
    // Inside the warning period: look again just after the deadline (the server then
    // answers 401 unless the session was kept alive elsewhere); before it: at its start.
    var wait = remaining <= warningSeconds + 1 ? remaining + 1 : remaining - warningSeconds;
    timer = setTimeout(check, Math.max(1, wait) * 1000);
  }

  // Local estimate after activity on this page (a page load, an htmx request).
  function scheduleFromActivity() {
    var absoluteLeft = (absoluteDeadline - Date.now()) / 1000;
    if (absoluteLeft < idleSeconds) {
      schedule(absoluteLeft, "absolute");
    } else {
      schedule(idleSeconds, "idle");
    }
  }

  function check() {
    clearTimeout(timer);
    fetch(statusUrl, {
      method: "GET",
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json", "X-PJD-Background": "1" },
    })
      .then(function (response) {
        if (response.status === 401) {
          expire();
          return null;
        }
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (status) {
        if (!status) {
          return;
        }
        absoluteDeadline = Date.now() + status.absolute_remaining * 1000;
        schedule(status.remaining, status.limit);
      })
      .catch(function () {
        // Network trouble: try again shortly; the server decides expiry in any case.
        clearTimeout(timer);
        timer = setTimeout(check, 15000);
      });
  }

  function keepAlive() {
    fetch(keepaliveUrl, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    })
      .then(function (response) {
        if (response.status === 401) {
          expire();
          return;
        }
        check();
      })
      .catch(function () {
        check();
      });
  }

  if (continueButton) {
    continueButton.addEventListener("click", function () {
      hide();
      keepAlive();
    });
  }
  if (closeButton) {
    closeButton.addEventListener("click", function () {
      dismissedAbsolute = true;
      hide();
    });
  }
  dialog.addEventListener("cancel", function (event) {
    // Escape: the same as the visible button.
    event.preventDefault();
    if (continueButton && !continueButton.hidden) {
      continueButton.click();
    } else if (closeButton) {
      closeButton.click();
    }
  });

  // htmx requests (other than background ones) are activity.
  document.body.addEventListener("htmx:afterRequest", function (event) {
    var detail = event.detail || {};
    if (detail.successful && !leaving) {
      scheduleFromActivity();
    }
  });
  // Timers are throttled in hidden tabs and frozen in the back/forward cache: re-check.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !leaving) {
      check();
    }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && !leaving) {
      check();
    }
  });

  var idleLeft = Number(data.idleRemaining);
  var absoluteLeft = Number(data.absoluteRemaining);
  if (absoluteLeft < idleLeft) {
    schedule(absoluteLeft, "absolute");
  } else {
    schedule(idleLeft, "idle");
  }
})();
