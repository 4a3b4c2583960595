// fhirhose console: small progressive enhancements; every page works without them.

// "Copy" buttons: copy the text of the element named by data-copy.
for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    const status = button.parentElement.querySelector(".copied");
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      if (status) status.textContent = "Copied.";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(source);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      if (status) status.textContent = "Selected: press Ctrl+C to copy.";
    }
  });
}

// Expiry countdowns: "89 d 23 h 59 min" from data-expires (epoch seconds).
function countdown() {
  const now = Date.now() / 1000;
  for (const el of document.querySelectorAll(".countdown[data-expires]")) {
    let left = Number(el.dataset.expires) - now;
    if (left <= 0) { el.textContent = "expired: rotate it"; continue; }
    const d = Math.floor(left / 86400); left -= d * 86400;
    const h = Math.floor(left / 3600); left -= h * 3600;
    const m = Math.floor(left / 60);
    el.textContent = `${d} d ${h} h ${m} min left`;
  }
}
countdown();
setInterval(countdown, 30000);

// IP allowlists validated as typed (the server validates again).
const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(\/(3[0-2]|[12]?\d))?$/;
const V6 = /^[0-9a-fA-F:]*:[0-9a-fA-F:.]*(\/(12[0-8]|1[01]\d|[1-9]?\d))?$/;
for (const area of document.querySelectorAll("textarea.ips")) {
  const out = document.getElementById(area.getAttribute("aria-describedby"));
  const max = Number(area.dataset.max || 8);
  const check = () => {
    const entries = area.value.split(/[\s,]+/).filter(Boolean);
    const bad = entries.filter((e) => !(V4.test(e) || V6.test(e)));
    let msg = "", ok = true;
    if (bad.length) { msg = `Not an address or CIDR range: ${bad.join(", ")}`; ok = false; }
    else if (entries.length > max) { msg = `${entries.length} entries; at most ${max}.`; ok = false; }
    else if (entries.length) { msg = `${entries.length} of ${max} entries, all valid.`; }
    area.setAttribute("aria-invalid", ok ? "false" : "true");
    out.textContent = msg;
    out.className = "check " + (ok ? "good" : "bad");
  };
  area.addEventListener("input", check);
  check();
}

// Live job progress: while a job runs, re-read the jobs table every 3 s.
const jobs = document.getElementById("jobs");
if (jobs && jobs.dataset.live) {
  const timer = setInterval(async () => {
    const resp = await fetch(location.href, { credentials: "same-origin" });
    if (!resp.ok) { clearInterval(timer); return; }
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.getElementById("jobs");
    if (!fresh) return;
    document.getElementById("jobs").replaceWith(fresh);
    if (!fresh.dataset.live) clearInterval(timer);
  }, 3000);
}
