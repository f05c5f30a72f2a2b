/*! clickstream SDK | Apache-2.0 | docs/sdk.md */
// The browser tracker. Load it from the site's tracking hostname (its CNAME):
//   <script src="https://t.example.com/sdk.js" async></script>
// It sends to /v1/collect on the host it was loaded from, and hands the scores of every
// collect response back to the page: clickstream.onScores(cb) and the "clickstream:scores"
// event on window. Nothing is ever written to cookies or storage by this script; the visitor
// cookie is the worker's own first-party, HttpOnly cookie, and the browser is only allowed to
// keep it once consent allows (requests go out with credentials "omit" before that).
(function (w, d, nav) {
  "use strict";
  const VERSION = "1.0.0";
  const prev = w.clickstream;
  if (prev && prev.version) return; // loaded twice: the first one keeps tracking

  // The site's settings, written in by the server that serves this file (see ingest_worker/sdk.py).
  const site = {_:"@site"};
  const me = d.currentScript || d.querySelector('script[src*="sdk.js"]') || { getAttribute() {} };
  const attr = (n) => me.getAttribute("data-" + n);
  const on = (n) => { const v = attr(n); return v != null && v !== "false" && v !== "0"; };
  const endpoint = attr("endpoint") || new URL(me.src || "/", location.href).origin + "/v1/collect";
  // The page may only make the rules stricter than the site's configuration.
  const consentRequired = !!site.consent_required || on("consent-required");
  const respectDnt = !!site.respect_dnt || on("respect-dnt");
  const flushMs = +attr("flush-ms") || 1000;
  const off = respectDnt && (nav.doNotTrack === "1" || w.doNotTrack === "1" || nav.globalPrivacyControl === true);
  const tz = (() => { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; } })();
  const now = () => Date.now();
  const mono = () => performance.now();
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => (b + 256).toString(16).slice(1)).join("");
  const uid = () => hex(crypto.getRandomValues(new Uint8Array(16)));
  const here = () => location.href.split("#")[0];

  let consent = null; // null: never said; true/false: clickstream.consent(...)
  let hem = "", hemSent = false, visitorId = "", last = null;
  const listeners = [];
  const allowed = () => !consentRequired || consent === true; // may the browser keep the cookie?

  // ---- sending: a short batching timer, retries with the same event_id, a beacon on page hide
  let queue = [], timer = 0, failures = 0;
  function enqueue(ev) {
    if (off) return;
    queue.push(ev);
    if (queue.length > 500) queue.shift();
    if (queue.length >= 20) flush();
    else if (!timer) timer = setTimeout(flush, flushMs);
  }
  function flush(leaving) {
    clearTimeout(timer);
    timer = 0;
    if (!queue.length) return;
    const batch = queue.splice(0, 40);
    const body = JSON.stringify({ events: batch });
    // A string body goes out as text/plain: a "simple" CORS request, no preflight.
    const opts = { method: "POST", body, keepalive: true, credentials: allowed() ? "include" : "omit" };
    if (leaving) {
      if (!(allowed() && nav.sendBeacon && nav.sendBeacon(endpoint, body))) fetch(endpoint, opts).catch(() => {});
      if (queue.length) flush(true);
      return;
    }
    fetch(endpoint, opts).then((r) => {
      if (r.status >= 500 || r.status === 429) throw r;
      failures = 0;
      if (r.ok) r.json().then(emit, () => {});
      // another 4xx: the server refused the batch as malformed; sending it again cannot help
    }).catch(() => {
      if (++failures > 8) { failures = 0; return; } // give this batch up
      queue = batch.concat(queue); // same objects, same event_id: the server dedupes
      clearTimeout(timer);
      timer = setTimeout(flush, Math.min(30000, 500 * 2 ** failures));
    });
    if (queue.length && !timer) timer = setTimeout(flush, 0);
  }
  function emit(res) {
    last = res;
    if (res && res.visitor_id) visitorId = res.visitor_id; // kept in memory only
    for (const cb of listeners.slice()) call(cb, res);
    w.dispatchEvent(new CustomEvent("clickstream:scores", { detail: res }));
  }
  const call = (cb, res) => { try { cb(res); } catch (e) { setTimeout(() => { throw e; }); } };

  // ---- the page: engagement time (visible and focused only) and scroll depth
  let pageUrl = "", pageTitle = "", referrer = d.referrer, engaged = 0, since = 0, maxDepth = 0, marks = 0, hidden = false;
  const active = () => d.visibilityState === "visible" && d.hasFocus();
  const tick = () => { const t = now(); if (since) engaged += t - since; since = active() ? t : 0; return engaged; };
  const depth = () => {
    const h = Math.max(d.documentElement.scrollHeight, d.body ? d.body.scrollHeight : 0);
    return h ? Math.min(100, Math.round(((w.scrollY + w.innerHeight) / h) * 100)) : 100;
  };

  function base(type, extra) {
    const ev = {
      type, url: here(), referrer, title: d.title, ts: now(), event_id: uid(),
      screen: screen.width + "x" + screen.height, viewport: w.innerWidth + "x" + w.innerHeight,
      language: nav.language || "", timezone: tz, scroll_depth: maxDepth, time_on_page_ms: tick(),
    };
    if (visitorId) ev.visitor_id = visitorId;
    if (consent !== null || consentRequired) ev.consent = consent === true;
    if (hem && allowed()) ev.hem = hem;
    return Object.assign(ev, extra);
  }

  function pageView() {
    pageUrl = here();
    pageTitle = d.title;
    engaged = 0;
    since = active() ? now() : 0;
    maxDepth = depth();
    marks = Math.floor(maxDepth / 25); // milestones already in view need no scroll event
    enqueue(base("page_view"));
  }
  function leavePage() {
    for (const c of pending.slice()) settle(c, true);
    enqueue(base("engagement", { url: pageUrl, title: pageTitle })); // the page being left
  }
  function routeChanged() {
    if (here() === pageUrl) return; // same page (or a hash change)
    leavePage();
    referrer = pageUrl;
    pageView();
  }
  for (const m of ["pushState", "replaceState"]) {
    const orig = history[m];
    history[m] = function () {
      const r = orig.apply(this, arguments);
      setTimeout(routeChanged); // let the app set document.title first
      return r;
    };
  }
  w.addEventListener("popstate", () => setTimeout(routeChanged));

  for (const t of ["visibilitychange", "focus", "blur", "pageshow"]) w.addEventListener(t, tick, true);
  function onHide() {
    tick();
    if (!hidden) { hidden = true; leavePage(); }
    flush(true);
  }
  d.addEventListener("visibilitychange", () => { if (d.visibilityState === "hidden") onHide(); else hidden = false; });
  w.addEventListener("pagehide", onHide);
  w.addEventListener("pageshow", (e) => { if (e.persisted) { hidden = false; pageView(); } }); // back/forward cache

  let lastScroll = 0;
  w.addEventListener("scroll", () => {
    lastScroll = mono();
    const p = depth();
    if (p <= maxDepth) return;
    maxDepth = p;
    const m = Math.floor(p / 25);
    if (m > marks) { marks = m; enqueue(base("scroll", { props: { milestone: m * 25 } })); }
  }, { passive: true, capture: true });

  // ---- clicks: position, a short stable target, rage bursts and dead clicks
  const describe = (el) => {
    const parts = [];
    for (let i = 0; el && el.nodeType === 1 && i < 4; i++, el = el.parentElement) {
      let s = el.localName;
      const id = el.getAttribute("id"), name = el.getAttribute("name");
      if (id) { parts.unshift(s + "#" + id); break; }
      const cls = Array.from(el.classList).filter((c) => /^[a-z_-][\w-]{0,24}$/i.test(c)).slice(0, 2);
      if (cls.length) s += "." + cls.join(".");
      if (name) s += "[name=" + name + "]";
      parts.unshift(s);
      if (el === d.body) break;
    }
    return parts.join(">").slice(-160);
  };
  let lastMutation = 0;
  new MutationObserver(() => { lastMutation = mono(); })
    .observe(d.documentElement, { subtree: true, childList: true, attributes: true, characterData: true });
  const pending = []; // clicks wait one second to learn whether they were dead
  d.addEventListener("click", (e) => {
    const x = Math.round(e.pageX), y = Math.round(e.pageY), t = mono();
    const el = e.target && e.target.nodeType === 1 ? e.target : e.target && e.target.parentElement;
    const c = {
      ev: base("click", { x, y, target: el ? describe(el) : "", props: {} }), t, x, y, url: here(),
      // a field taking focus or a link opening elsewhere changes nothing we can see: never "dead"
      live: !!(el && el.closest("input,select,textarea,label,[contenteditable],a[target],a[download]")),
    };
    pending.push(c);
    const burst = pending.filter((p) => t - p.t <= 1000 && Math.hypot(p.x - x, p.y - y) <= 30);
    if (burst.length >= 3) for (const p of burst) { p.ev.props.rage = true; p.ev.props.burst = burst.length; }
    setTimeout(() => settle(c), 1000);
  }, true);
  function settle(c, leaving) {
    const i = pending.indexOf(c);
    if (i < 0) return;
    pending.splice(i, 1);
    if (!leaving && !c.live && lastMutation < c.t && lastScroll < c.t && here() === c.url) c.ev.props.dead = true;
    if (!Object.keys(c.ev.props).length) delete c.ev.props;
    enqueue(c.ev);
  }

  // ---- errors and form submits (never field values)
  let errors = 0;
  const error = (name, props) => { if (errors++ < 10) enqueue(base("error", { name: String(name).slice(0, 200), props })); };
  w.addEventListener("error", (e) => error(e.message, { source: `${e.filename || ""}:${e.lineno || 0}:${e.colno || 0}`, kind: "error" }));
  w.addEventListener("unhandledrejection", (e) => error((e.reason && e.reason.message) || e.reason, { kind: "rejection" }));
  d.addEventListener("submit", (e) => {
    const f = e.target;
    enqueue(base("form_submit", {
      name: f.getAttribute("name") || f.getAttribute("id") || "", target: describe(f),
      props: { action: (f.getAttribute("action") || "").split("?")[0], method: (f.getAttribute("method") || "get").toLowerCase() },
    }));
  }, true);

  // ---- the public API
  const flat = (o) => {
    const r = {};
    for (const k in o || {}) { const v = o[k]; r[k] = v === null || typeof v !== "object" ? v : JSON.stringify(v); }
    return r;
  };
  function track(name, props) {
    name = String(name || "").slice(0, 100);
    const p = flat(props), extra = { name };
    if ("value" in p) { extra.value = +p.value; delete p.value; }
    if ("currency" in p) { extra.currency = String(p.currency); delete p.currency; }
    if (Object.keys(p).length) extra.props = p;
    enqueue(base(name === "add_to_cart" || name === "purchase" ? name : "custom", extra));
  }
  function sendIdentify() {
    if (hem && !hemSent && allowed()) { hemSent = true; enqueue(base("identify")); }
  }
  async function identify(email) {
    const s = String(email || "").trim().toLowerCase();
    if (!s) throw new Error("clickstream.identify: empty e-mail");
    if (!/^[0-9a-f]{64}$/.test(s)) {
      if (!(w.crypto && crypto.subtle)) throw new Error("clickstream.identify needs a secure (https) page to hash the e-mail");
      hem = hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
    } else hem = s; // already hashed
    hemSent = false;
    sendIdentify(); // held back until consent when the site requires it
    return hem;
  }
  function setConsent(v) {
    consent = !!v;
    sendIdentify();
  }
  function onScores(cb) {
    listeners.push(cb);
    if (last) setTimeout(() => call(cb, last));
    return () => { const i = listeners.indexOf(cb); if (i >= 0) listeners.splice(i, 1); };
  }

  const api = {
    version: VERSION, endpoint, track, identify, consent: setConsent, onScores,
    flush: () => flush(), get scores() { return last; }, get disabled() { return off; },
  };
  w.clickstream = api;
  // Calls made before the script arrived: window.clickstream = {q: [["track", ...], ...]}
  const early = (prev && prev.q) || [];
  for (const [m, ...a] of early) if (m === "consent") setConsent(a[0]);
  pageView();
  for (const [m, ...a] of early) if (m !== "consent" && typeof api[m] === "function") api[m](...a);
})(window, document, navigator);
