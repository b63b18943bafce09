// Keeps a dashboard page live without reloading it: every data-poll-ms it asks the page's JSON (data-poll) and,
// when the answer changed, fetches the page again and swaps in its new content. Times are shown in the viewer's
// own zone. Hand-written, no library: the pages must work with nothing but this file.
"use strict";

(function () {
  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!live) return;
  const every = Number(live.dataset.pollMs) || 1000;
  let last = null;

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) {
        el.textContent = at.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"});
        el.title = el.getAttribute("datetime");
      }
    }
  }

  function showStatus(ok) {
    if (!status) return;
    status.textContent = ok ? "live" : "offline: retrying";
    status.classList.toggle("offline", !ok);
  }

  async function refresh() {
    const answer = await fetch(window.location.href, {cache: "no-store", headers: {"Accept": "text/html"}});
    if (!answer.ok && answer.status !== 404) throw new Error(String(answer.status));
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.getElementById("live");
    if (!fresh) return;
    // A form being filled in (the history's filters) is left alone until it is submitted.
    const focused = document.activeElement;
    if (focused && live.contains(focused) && focused.closest("form")) return;
    live.innerHTML = fresh.innerHTML;
    live.dataset.poll = fresh.dataset.poll;
    localTimes(live);
    document.dispatchEvent(new CustomEvent("dashboard:updated"));
  }

  async function poll() {
    try {
      const answer = await fetch(live.dataset.poll, {cache: "no-store", headers: {"Accept": "application/json"}});
      if (!answer.ok && answer.status !== 404) throw new Error(String(answer.status));
      const text = await answer.text();
      // The first answer too: the page may have changed between being rendered and this first look.
      if (text !== last) await refresh();
      last = text;
      showStatus(true);
    } catch (error) {
      showStatus(false);
    } finally {
      window.setTimeout(poll, every);
    }
  }

  localTimes(document);
  window.setTimeout(poll, 0);
})();
