// Small enhancements; every page works without them.
document.addEventListener("DOMContentLoaded", () => {
  // "All in this group" ticks or clears the group's event types (shown only with script).
  document.querySelectorAll("[data-select-group]").forEach((all) => {
    all.closest("label").hidden = false;
    const members = document.querySelectorAll(`[data-group-member="${all.dataset.selectGroup}"]`);
    const sync = () => {
      const checked = [...members].filter((m) => m.checked).length;
      all.checked = checked === members.length;
      all.indeterminate = checked > 0 && checked < members.length;
    };
    all.addEventListener("change", () => { members.forEach((m) => { m.checked = all.checked; }); sync(); });
    members.forEach((m) => m.addEventListener("change", sync));
    sync();
  });

  // After a failed submit, take keyboard and screen-reader focus to the error summary.
  const summary = document.getElementById("form-errors");
  if (summary) summary.focus();

  // A form submits once: a double click must not create two endpoints.
  document.querySelectorAll("form[data-submit-once]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.submitted) event.preventDefault();
      form.dataset.submitted = "yes";
    });
  });

  // Copy buttons.
  document.querySelectorAll("[data-copy-target]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copyTarget);
      const status = button.parentElement.querySelector("[data-copy-status]");
      source.select();
      try {
        await navigator.clipboard.writeText(source.value);
        if (status) status.textContent = "Copied";
      } catch {
        if (status) status.textContent = "Press Ctrl+C to copy";
      }
    });
  });

  // The test event's delivery: follow its status until it ends.
  const result = document.querySelector("[data-poll-url]");
  if (result) {
    result.focus();
    const statusEl = result.querySelector("[data-delivery-status]");
    const codeEl = result.querySelector("[data-delivery-code]");
    let tries = 0;
    const poll = async () => {
      tries += 1;
      const response = await fetch(result.dataset.pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const delivery = await response.json();
      const badge = document.createElement("span");
      badge.className = `badge badge-${delivery.status}`;
      badge.textContent = delivery.status;
      statusEl.replaceChildren(badge);
      codeEl.textContent = delivery.last_status_code ? `(HTTP ${delivery.last_status_code})` : "";
      if (delivery.status === "pending" && tries < 60) setTimeout(poll, 1000);
    };
    setTimeout(poll, 500);
  }
});
