// Sends the logout on to HelseID at once (no inline script: the CSP forbids it). Without
// JavaScript the form's own button does the same.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-auto-submit]");
  if (form instanceof HTMLFormElement) {
    form.submit();
  }
});
