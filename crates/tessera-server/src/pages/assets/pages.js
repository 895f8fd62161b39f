// The account page's one script: keeps the countdowns ("12m 03s left")
// live. It reads only the page's own data-until attributes (Unix seconds)
// and never a cookie, storage or credential: there is none it could read.
"use strict";

function left(secs) {
  if (secs <= 0) return "expired";
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (h > 0) return `${h}h ${pad(m)}m ${pad(s)}s`;
  if (m > 0) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

function tick() {
  const now = Math.floor(Date.now() / 1000);
  for (const el of document.querySelectorAll("[data-until]")) {
    const secs = Number(el.dataset.until) - now;
    const text = left(secs);
    el.textContent = el.id ? text : `(${text} left)`;
  }
}

tick();
setInterval(tick, 1000);
