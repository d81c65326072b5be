// The speaker page: the microphone into the room, through the server's capture pipeline.
// An AudioWorklet (mic-worklet.js) makes 50 ms frames of 16 kHz int16; each goes over the
// websocket with its session sample offset. Frames stay here until the server's status says
// it has them, so a dropped link (reconnected with back-off, same session) loses nothing:
// the server says from which offset it needs audio, and drops what it already has.
"use strict";

(function () {
  const parts = location.pathname.split("/");
  const room = decodeURIComponent(parts[parts.length - 2]);
  const params = new URLSearchParams(location.search);
  const tokenKey = "s2st-token:" + location.pathname;
  if (params.has("token")) { // out of the address bar, kept in this tab (as room.js does)
    sessionStorage.setItem(tokenKey, params.get("token"));
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
  }
  const token = sessionStorage.getItem(tokenKey);
  const $ = (id) => document.getElementById(id);
  $("room").textContent = room;
  document.title = `s2st · speak · ${room}`;
  $("speaker").value = localStorage.getItem("s2st-speaker-name") || "";
  if (params.get("lang")) $("source-lang").value = params.get("lang");

  const MAX_PENDING = 1200; // 60 s of 50 ms frames kept for a reconnect
  const stats = {
    // the session lives as long as this page's microphone: a reloaded page starts a new one
    // (its sample count starts again), the old one ends after the server's grace period
    state: "idle", session: null, offset: 0, acked: 0, newSessions: 0,
    framesSent: 0, framesResent: 0, framesLost: 0, reconnects: 0, captions: 0,
    connected: false, refused: null, ended: null, status: null, level: 0,
  };
  window.s2stSpeak = stats;
  let pending = []; // {offset, pcm: Int16Array} not yet confirmed by the server
  let ws = null;
  let ready = false; // the server answered this link's hello
  let retry = 250;
  let holdUntil = 0; // tests: keep the link down until then (performance.now() ms)
  let media = null;
  let ctx = null;

  function setLink(text, cls) { $("link").textContent = text; $("link").className = cls; }
  function figures() {
    const s = stats.status;
    const buffered = pending.length * 0.05;
    $("figures").textContent = s
      ? `sent ${(stats.offset / 16000).toFixed(1)} s · server has ${(s.offset / 16000).toFixed(1)} s` +
        ` · chunks ${s.published} · vad ${s.vad}` + (buffered > 0.5 ? ` · unsent ${buffered.toFixed(1)} s` : "") +
        (s.redis_up ? "" : " · bus unreachable: buffering") + (s.dropped ? ` · lost ${s.dropped}` : "")
      : `sent ${(stats.offset / 16000).toFixed(1)} s`;
  }

  // -- captions (the session's transcript: partial grey, committed black) ----------------
  const lines = new Map();
  function onCaption(m) {
    let line = lines.get(m.utterance);
    if (!line) {
      const el = document.createElement("p");
      el.className = "line";
      const committed = document.createElement("span");
      committed.className = "committed";
      const partial = document.createElement("span");
      partial.className = "partial";
      el.append(committed, partial);
      $("source").appendChild(el);
      line = { el, committedEl: committed, partialEl: partial, committed: new Map() };
      lines.set(m.utterance, line);
    }
    if (m.kind === "committed") {
      line.committed.set(m.seq, m.text);
      const seqs = [...line.committed.keys()].sort((a, b) => a - b);
      line.committedEl.textContent = seqs.map((s) => line.committed.get(s)).join(" ");
      if (m.final) line.partialEl.textContent = "";
    } else {
      line.partialEl.textContent = (line.committed.size ? " " : "") + m.text;
    }
    line.el.scrollIntoView({ block: "nearest" });
    stats.captions += 1;
  }

  // -- the link ---------------------------------------------------------------------------
  function send(frame) {
    const buf = new ArrayBuffer(8 + frame.pcm.byteLength);
    new DataView(buf).setFloat64(0, frame.offset, true);
    new Int16Array(buf, 8).set(frame.pcm);
    ws.send(buf);
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const link = new WebSocket(`${scheme}://${location.host}/ws/${encodeURIComponent(room)}/speak`);
    ws = link;
    ready = false;
    link.binaryType = "arraybuffer";
    setLink(stats.reconnects ? "reconnecting…" : "connecting…", "wait");
    link.onopen = () => {
      link.send(JSON.stringify({ type: "hello", token, session: stats.session,
        speaker: $("speaker").value.trim(), lang: $("source-lang").value }));
    };
    link.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "ready") {
        ready = true; retry = 250; stats.connected = true;
        if (stats.session && stats.session !== m.session) {
          // the old session is gone (the link was down longer than the server's grace, or the
          // server restarted): a new one starts with the audio not yet confirmed
          const base = pending.length ? pending[0].offset : stats.offset;
          for (const f of pending) f.offset -= base;
          stats.offset -= base;
          stats.acked = 0;
          stats.newSessions += 1;
        }
        stats.session = m.session;
        acknowledge(m.offset);
        for (const f of pending) { send(f); stats.framesResent += 1; }
        setLink(`live · ${m.speaker || m.session}`, "ok");
      } else if (m.type === "status") {
        stats.status = m;
        acknowledge(m.offset);
        figures();
      } else if (m.type === "caption") {
        onCaption(m);
      } else if (m.type === "ended") {
        stats.ended = m.reason;
        setLink(`ended (${m.reason})`, "bad");
        // ready for a new session
        $("start").disabled = $("speaker").disabled = $("source-lang").disabled = false;
      }
    };
    link.onclose = (ev) => {
      if (ws !== link) return;
      stats.connected = false; ready = false;
      if (stats.ended || stats.state === "left") { stop(); return; }
      if (ev.code >= 4000 && ev.code < 5000) {
        stats.refused = { code: ev.code, reason: ev.reason };
        if (ev.code === 4401) sessionStorage.removeItem(tokenKey);
        setLink(`refused: ${ev.reason || ev.code}`, "bad");
        $("message").textContent = ev.reason || `refused (${ev.code})`;
        stop();
        return;
      }
      stats.reconnects += 1;
      setLink("link lost: reconnecting…", "wait");
      const wait = Math.max(retry, holdUntil - performance.now());
      setTimeout(connect, wait);
      retry = Math.min(retry * 2, 5000);
    };
  }
  function acknowledge(offset) {
    stats.acked = Math.max(stats.acked, offset);
    while (pending.length && pending[0].offset + pending[0].pcm.length <= stats.acked) pending.shift();
  }

  // -- the microphone -----------------------------------------------------------------------
  function onFrame(pcm, rms) {
    if (stats.state !== "speaking") return; // a frame made after the leave
    const frame = { offset: stats.offset, pcm };
    stats.offset += pcm.length;
    pending.push(frame);
    if (pending.length > MAX_PENDING) { pending.shift(); stats.framesLost += 1; }
    if (ws && ready && ws.readyState === WebSocket.OPEN) { send(frame); stats.framesSent += 1; }
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    stats.level = db;
    $("level").style.width = `${Math.max(0, Math.min(100, (db + 60) / 60 * 100))}%`;
    $("level").className = stats.status && stats.status.vad === "speech" ? "speech" : "";
  }
  async function start() {
    $("start").disabled = true;
    if (stats.ended) { // a new session after the last one ended
      Object.assign(stats, { session: null, offset: 0, acked: 0, ended: null, status: null });
      pending = [];
    }
    $("message").textContent = "";
    localStorage.setItem("s2st-speaker-name", $("speaker").value.trim());
    if (!window.isSecureContext || !navigator.mediaDevices) {
      $("message").textContent = "The browser gives the microphone to HTTPS pages only: ask " +
        "the organizer for an https:// link.";
      $("start").disabled = false;
      return;
    }
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: {
        // the raw signal: gain control clipped the speech (the ASR lost words), and the VAD
      // and the ASR do their own work on noise
      channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
      ctx = new AudioContext();
      await ctx.audioWorklet.addModule("/static/mic-worklet.js");
      const node = new AudioWorkletNode(ctx, "mic-downsampler", { numberOfOutputs: 1 });
      node.port.onmessage = (ev) => onFrame(ev.data.pcm, ev.data.rms);
      const mute = ctx.createGain();
      mute.gain.value = 0;
      ctx.createMediaStreamSource(media).connect(node).connect(mute).connect(ctx.destination);
      await ctx.resume();
    } catch (err) {
      $("message").textContent = `No microphone: ${err.message || err}`;
      $("start").disabled = false;
      return;
    }
    stats.state = "speaking";
    $("speaker").disabled = $("source-lang").disabled = true;
    $("leave").disabled = false;
    connect();
  }
  function stop() {
    if (media) media.getTracks().forEach((t) => t.stop());
    if (ctx) ctx.close();
    media = null; ctx = null;
    $("leave").disabled = true;
  }
  function leave() {
    stats.state = "left";
    if (media) media.getTracks().forEach((t) => t.stop());
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
    setLink("leaving…", "wait");
    $("leave").disabled = true;
  }
  $("start").addEventListener("click", start);
  $("leave").addEventListener("click", leave);
  // for tests and troubleshooting: drop the link (and keep it down for `ms`)
  window.s2stSpeakDrop = (ms) => { holdUntil = performance.now() + (ms || 0); if (ws) ws.close(); };
})();
