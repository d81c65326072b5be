// The operator view: polls /api/admin/overview every few seconds and draws it; creates rooms
// and issues links. The admin token came in the link: it is kept in this tab only, taken out
// of the address bar and sent in an Authorization header (never a cookie, never a URL).
// Everything shown is set as text (textContent), never as HTML.
"use strict";

(function () {
  const POLL_MS = 3000;
  const params = new URLSearchParams(location.search);
  const tokenKey = "s2st-token:" + location.pathname;
  if (params.has("token")) {
    sessionStorage.setItem(tokenKey, params.get("token"));
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
  }
  const token = sessionStorage.getItem(tokenKey);
  const $ = (id) => document.getElementById(id);
  const state = { updates: 0, errors: 0, last: null, stopped: false };
  window.s2stAdmin = state;

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const c of children) {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }
  function table(head, rows) {
    return el("table", null, el("thead", null, el("tr", null, ...head.map((h) => el("th", null, h)))),
      el("tbody", null, ...rows.map((r) => el("tr", null, ...r.map((c) => el("td", null, c))))));
  }
  const secs = (s) => (s === null || s === undefined) ? "–"
    : s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
  const fig = (s) => (s === null || s === undefined) ? "–" : `${s.toFixed(2)} s`;

  async function call(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const reply = await fetch(path, { method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body) });
    let data = {};
    try { data = await reply.json(); } catch (e) { /* not JSON */ }
    if (reply.status === 401) {
      sessionStorage.removeItem(tokenKey);
      state.stopped = true;
    }
    if (!reply.ok) throw new Error(data.message || data.error || `HTTP ${reply.status}`);
    return data;
  }

  function drawRooms(rooms) {
    const select = $("link-room");
    const chosen = select.value;
    select.replaceChildren(...rooms.map((r) => el("option", { value: r.room }, r.room)));
    if (rooms.some((r) => r.room === chosen)) select.value = chosen;
    if (!rooms.length) { $("rooms").replaceChildren(el("p", { className: "muted" }, "no rooms yet")); return; }
    $("rooms").replaceChildren(table(["room", "languages", "sessions", "dead"], rooms.map((r) => [
      el("b", { className: "room" }, r.room),
      r.targets.map((t) => t.lang + (t.pinned ? "" : " (listener)")).join(", ") || "none",
      r.sessions.length ? el("ul", null, ...r.sessions.map((s) => el("li",
        { className: "session " + s.state },
        el("b", null, s.speaker || s.session), ` ${s.lang} · ${secs(s.age_s)} · `,
        s.state === "active"
          ? el("span", { className: s.heartbeat_s > 5 ? "warn" : "" }, `active, heartbeat ${secs(s.heartbeat_s)} ago`)
          : el("span", { className: "muted" }, `ended ${secs(s.ended_s)} ago (${s.reason || "stopped"})`))))
        : el("span", { className: "muted" }, "none"),
      el("span", { className: r.dead_letters ? "bad" : "" }, r.dead_letters),
    ])));
  }

  function drawStages(stages) {
    const names = Object.keys(stages);
    if (!names.length) { $("stages").replaceChildren(el("p", { className: "muted" }, "no workers registered")); return; }
    const rows = names.map((name) => {
      const s = stages[name];
      const live = s.workers.filter((w) => w.alive);
      const health = [];
      for (const w of live) {
        for (const [item, value] of Object.entries(w.health || {})) {
          const entries = value && typeof value === "object" ? Object.entries(value) : [["", value]];
          for (const [what, text] of entries) health.push(el("li", { className: "warn" }, `${w.id} ${item} ${what}: ${text}`));
        }
      }
      return [el("b", null, name),
        el("div", null, el("span", { className: live.length ? "" : "bad" }, `${live.length} live`),
          live.length ? ": " + live.map((w) => `${w.id} (${secs(w.age_s)})`).join(", ") : "",
          health.length ? el("ul", null, ...health) : null),
        el("span", { className: s.lag > 0 ? "warn" : "" }, s.lag + (s.unknown_lag ? "+?" : "")),
        s.pending, s.streams];
    });
    $("stages").replaceChildren(table(["stage", "workers, health", "lag", "pending", "streams"], rows));
  }

  function drawLatency(lat) {
    const head = el("p", null, el("span", { className: "figure" }, `p50 ${fig(lat.p50)}`),
      el("span", { className: "figure" }, `p95 ${fig(lat.p95)}`),
      el("span", { className: "muted" }, `${lat.segments} segment(s), max ${fig(lat.max)}`));
    const rows = lat.by_lang.map((b) => [b.room, b.lang, b.segments, fig(b.p50), fig(b.p95), fig(b.max)]);
    $("latency").replaceChildren(head,
      rows.length ? table(["room", "lang", "segments", "p50", "p95", "max"], rows) : "",
      el("p", { className: "muted" }, `From the ${lat.measures}.`));
  }

  function drawDead(dead) {
    const parts = [el("p", null, `${dead.total} in all`)];
    if (dead.by.length) {
      parts.push(table(["stage", "reason", `count (latest ${dead.scanned_per_room} per room)`],
        dead.by.map((b) => [b.stage, b.reason, b.count])));
      parts.push(el("h2", null, "Latest"));
      parts.push(table(["when", "room", "stage", "session", "error"], dead.latest.map((d) => [
        new Date(d.failed_at * 1000).toLocaleTimeString(), d.room, d.stage, d.session,
        el("span", { className: "bad", title: d.reason }, d.error)])));
    }
    $("dead").replaceChildren(...parts);
  }

  async function refresh() {
    try {
      const data = await call("GET", "/api/admin/overview");
      drawRooms(data.rooms);
      drawStages(data.stages);
      drawLatency(data.latency);
      drawDead(data.dead_letters);
      state.last = data;
      state.updates += 1;
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
      $("status").className = "ok";
    } catch (e) {
      state.errors += 1;
      $("status").textContent = e.message;
      $("status").className = "bad";
    }
  }
  async function poll() {
    await refresh();
    if (!state.stopped) setTimeout(poll, POLL_MS);
  }

  $("create-room").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("create-out");
    try {
      const r = await call("POST", "/api/admin/rooms", { room: $("new-room").value.trim(),
        langs: $("new-langs").value });
      out.textContent = `${r.created ? "created" : "already there:"} ${r.room} (${r.targets.join(", ") || "no languages"})`;
      out.className = "muted";
      $("link-room").append(el("option", { value: r.room }, r.room));
      $("link-room").value = r.room;
      refresh();
    } catch (e) {
      out.textContent = e.message;
      out.className = "bad";
    }
  });

  $("issue").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("issue-out");
    try {
      const r = await call("POST", "/api/admin/tokens", { room: $("link-room").value,
        role: $("link-role").value, ttl: $("link-ttl").value, lang: $("link-lang").value.trim() || null });
      $("link-out").value = r.link;
      $("link-out").select();
      out.textContent = `${r.role} link for ${r.room}, valid until ${r.expires_text} (token id ${r.token_id})`;
      out.className = "muted";
    } catch (e) {
      $("link-out").value = "";
      out.textContent = e.message;
      out.className = "bad";
    }
  });

  poll();
})();
