// The live room page: captions, speakers, translated speech through Web Audio, latency.
// Room and language come from the URL (the server validated them before serving this page).
// Speech arrives as binary frames: uint32 BE header length | header JSON | int16 LE PCM.
"use strict";

(function () {
  const room = decodeURIComponent(location.pathname.split("/").pop());
  const params = new URLSearchParams(location.search);
  let lang = params.get("lang") || "";
  // The access token (if the server asks for one) came in the link: keep it in this tab
  // only, take it out of the address bar (so it is not copied, bookmarked or shared with
  // the address), and hand it to the websocket in its first message, not in its URL.
  const tokenKey = "s2st-token:" + location.pathname;
  if (params.has("token")) {
    sessionStorage.setItem(tokenKey, params.get("token"));
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : "") +
      location.hash);
  }
  const token = sessionStorage.getItem(tokenKey);
  const $ = (id) => document.getElementById(id);
  $("room").textContent = room;
  function showLang() {
    $("lang").textContent = lang;
    $("lang2").textContent = lang;
    document.title = `s2st · ${room} · ${lang}`;
  }
  showLang();

  const stats = {
    connected: false, messages: 0, captions: 0, buffersReceived: 0, buffersScheduled: 0,
    audioBytes: 0, audioState: "none", lastLatency: null, latencies: [], captionLatencies: [],
    // each piece when it starts to be heard: {session, seq, part, capture_end, start} with
    // start in the server's clock (epoch s), from the audio output's own timestamps
    played: [], segmentLatencies: [], lang,
  };
  window.s2stStats = stats;

  // -- speakers --------------------------------------------------------------------
  const speakers = new Map(); // session -> {speaker, status}
  function speakerName(session) {
    const s = speakers.get(session);
    return (s && s.speaker) || session;
  }
  function renderSpeakers(speaking) {
    const box = $("speakers");
    box.replaceChildren();
    for (const [session, s] of speakers) {
      const el = document.createElement("span");
      el.className = "speaker" + (s.status === "ended" ? " ended" : "") +
        (session === speaking ? " speaking" : "");
      el.textContent = (session === speaking ? "▶ " : "") + (s.speaker || session);
      el.dataset.session = session;
      box.appendChild(el);
    }
  }

  // -- captions: one line per (session, utterance) and track ---------------------------
  const lines = new Map(); // key -> {el, committed: Map(seq -> text), partial}
  function captionLine(track, session, utterance) {
    const key = `${track}/${session}/${utterance}`;
    let line = lines.get(key);
    if (!line) {
      const el = document.createElement("p");
      el.className = "line";
      el.dataset.session = session;
      const who = document.createElement("span");
      who.className = "who";
      const committed = document.createElement("span");
      committed.className = "committed";
      const partial = document.createElement("span");
      partial.className = "partial";
      el.append(who, committed, partial);
      $(track).appendChild(el);
      line = { el, who, committedEl: committed, partialEl: partial, committed: new Map() };
      lines.set(key, line);
      while ($(track).children.length > 200) $(track).firstChild.remove();
    }
    line.who.textContent = speakerName(session);
    return line;
  }
  function onCaption(m) {
    const line = captionLine(m.track, m.session, m.utterance);
    if (m.kind === "committed") {
      line.committed.set(m.seq, m.text);
      const seqs = [...line.committed.keys()].sort((a, b) => a - b);
      line.committedEl.textContent = seqs.map((s) => line.committed.get(s)).join(" ");
      if (m.final || m.track === "translation") line.partialEl.textContent = "";
    } else {
      line.partialEl.textContent = (line.committed.size ? " " : "") + m.text;
    }
    if (m.final) line.partialEl.textContent = "";
    line.el.scrollIntoView({ block: "nearest" });
    stats.captions += 1;
    stats.captionLatencies.push(m.latency);
  }

  // -- audio -----------------------------------------------------------------------
  let ctx = null;
  let playhead = 0; // AudioContext time at which the queue ends
  let clockOffset = null; // server time - local time, seconds (the largest lower bound seen)
  function audioContext() {
    if (!ctx) {
      ctx = new (window.AudioContext || window.webkitAudioContext)();
      ctx.onstatechange = () => { stats.audioState = ctx.state; gate(); };
      stats.audioState = ctx.state;
      gate();
    }
    return ctx;
  }
  function gate() {
    $("audio-gate").style.display = ctx && ctx.state === "suspended" ? "block" : "none";
  }
  $("audio-gate").addEventListener("click", () => audioContext().resume());

  function percentile(values, q) {
    if (!values.length) return NaN;
    const v = [...values].sort((a, b) => a - b);
    const pos = (v.length - 1) * q;
    const lo = Math.floor(pos), hi = Math.min(lo + 1, v.length - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  }
  function showLatency() {
    const fmt = (x) => (Number.isFinite(x) ? x.toFixed(2) + " s" : "–");
    const seg = stats.segmentLatencies;
    $("latency").textContent =
      `latency: speech starts p50 ${fmt(percentile(seg, 0.5))} · p95 ${fmt(percentile(seg, 0.95))}` +
      ` · pieces p50 ${fmt(percentile(stats.latencies, 0.5))}` +
      ` · captions p50 ${fmt(percentile(stats.captionLatencies, 0.5))}`;
    $("latency").title = "from the end of the source words to their translation being heard";
    $("buffers").textContent = `audio: ${stats.buffersReceived} pieces`;
  }

  function onSpeech(frame) {
    const view = new DataView(frame);
    const size = view.getUint32(0, false);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(frame, 4, size)));
    const pcm = new Int16Array(frame.slice(4 + size));
    stats.buffersReceived += 1;
    stats.audioBytes += pcm.byteLength;
    // the frame left the server at server_time: the offset is at least this
    const bound = header.server_time - Date.now() / 1000;
    clockOffset = clockOffset === null ? bound : Math.max(clockOffset, bound);
    const ac = audioContext();
    const buffer = ac.createBuffer(1, Math.max(pcm.length, 1), header.rate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const source = ac.createBufferSource();
    source.buffer = buffer;
    source.connect(ac.destination);
    const startAt = Math.max(playhead, ac.currentTime + 0.05);
    source.start(startAt);
    playhead = startAt + buffer.duration;
    stats.buffersScheduled += 1;
    // when it starts to be heard, in server wall-clock seconds: the output's timestamp maps
    // the context's time to performance.now() (headless or without one: the context's clock)
    const ts = ac.getOutputTimestamp ? ac.getOutputTimestamp() : {};
    const perf = ts.performanceTime > 0
      ? ts.performanceTime + (startAt - ts.contextTime) * 1000
      : performance.now() + (startAt - ac.currentTime) * 1000;
    const startWall = (performance.timeOrigin + perf) / 1000 + clockOffset;
    const latency = startWall - header.capture_end;
    stats.lastLatency = latency;
    stats.latencies.push(latency);
    if (stats.latencies.length > 1000) stats.latencies.shift();
    stats.played.push({ session: header.session, seq: header.seq, part: header.part,
      capture_end: header.capture_end, start: startWall });
    if (stats.played.length > 2000) stats.played.shift();
    if (header.part === 0) {
      stats.segmentLatencies.push(latency);
      if (stats.segmentLatencies.length > 1000) stats.segmentLatencies.shift();
    }
    setTimeout(() => renderSpeakers(header.session), Math.max(0, (startAt - ac.currentTime) * 1000));
    showLatency();
  }

  // -- the language, chosen on the page -----------------------------------------------
  function showLangs(langs) {
    const select = $("lang-select");
    const all = [...new Set([lang, ...(langs || [])])].sort();
    if ([...select.options].map((o) => o.value).join() === all.join()) return;
    select.replaceChildren(...all.map((l) => new Option(l, l, false, l === lang)));
  }
  $("lang-select").addEventListener("change", (ev) => {
    if (ev.target.value === lang) return;
    lang = ev.target.value;
    stats.lang = lang;
    params.set("lang", lang);
    history.replaceState(null, "", location.pathname + "?" + params);
    showLang();
    $("translation").replaceChildren();
    for (const key of [...lines.keys()]) if (key.startsWith("translation/")) lines.delete(key);
    playhead = 0;
    retry = 100;
    if (feed) feed.close(); // reconnects at once in the new language
  });

  // -- the feed ----------------------------------------------------------------------
  let retry = 500;
  let feed = null;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/${encodeURIComponent(room)}` +
      `?lang=${encodeURIComponent(lang)}`);
    feed = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (token) ws.send(JSON.stringify({ type: "auth", token }));
      stats.connected = true; retry = 500;
      $("status").textContent = "live"; $("status").className = "ok";
    };
    ws.onclose = (ev) => {
      stats.connected = false;
      $("status").className = "bad";
      if (ev.code >= 4000 && ev.code < 5000) {
        $("status").textContent = `refused: ${ev.reason || ev.code}`;
        if (ev.code === 4401) sessionStorage.removeItem(tokenKey);
        stats.refused = { code: ev.code, reason: ev.reason };
        return; // no access, bad room or language: retrying will not help
      }
      $("status").textContent = "reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
    ws.onmessage = (ev) => {
      if (ws !== feed) return;
      stats.messages += 1;
      if (ev.data instanceof ArrayBuffer) { onSpeech(ev.data); return; }
      const m = JSON.parse(ev.data);
      if (m.type === "caption") { onCaption(m); showLatency(); }
      else if (m.type === "sessions") {
        showLangs(m.langs);
        for (const s of m.sessions) speakers.set(s.session, s);
        renderSpeakers(null);
      } else if (m.type === "end") {
        stats.ends = stats.ends || [];
        stats.ends.push(`${m.session}/${m.track}`);
      }
      if (m.type === "end" && speakers.has(m.session) && m.track === "transcript") {
        speakers.get(m.session).status = "ended";
        renderSpeakers(null);
      }
    };
  }
  connect();
})();
