// The demo page: asks the backends about the requests they saw, and drives the
// echo and chat WebSockets.  Every URL is relative to this page, so it works
// through whichever listener (http or https, any port) served it.
"use strict";

(function () {
  const PALETTE = ["#3b5bdb", "#0ca678", "#e8590c", "#ae3ec9", "#1098ad", "#f08c00"];
  const SHOWN = ["Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP"];
  const MAX_LOG = 200;

  const $ = (id) => document.getElementById(id);

  // One stable colour per backend name, so the same backend looks the same everywhere.
  function colorOf(name) {
    let hash = 5381;
    for (const ch of name) hash = (hash * 33 + ch.charCodeAt(0)) >>> 0;
    return PALETTE[hash % PALETTE.length];
  }

  function tag(name) {
    const span = document.createElement("span");
    span.className = "tag";
    span.dataset.color = "";
    span.style.setProperty("--c", colorOf(name));
    span.textContent = name;
    return span;
  }

  function socketUrl(path) {
    const url = new URL(path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function clock(date) {
    return (date || new Date()).toLocaleTimeString([], { hour12: false });
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  // What the standard close codes mean (RFC 6455 7.4.1 and the IANA registry).
  const CLOSE_CODES = {
    1000: "normal",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1006: "abnormal, no close frame",
    1007: "invalid payload",
    1008: "policy violation",
    1009: "message too big",
    1011: "server error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
  };

  // The proxy closes with 1001 ("going away") when it asks a client to reconnect
  // elsewhere (rebalancing, a drain that ends, a session's lifetime) or when it stops:
  // the page reconnects after a short random wait, so clients asked together do not
  // all come back at the same instant.
  const RECONNECT_CODES = new Set([1001]);

  function reconnectLater(state, log, event, connect) {
    if (!RECONNECT_CODES.has(event.code)) return false;
    const wait = 200 + Math.floor(Math.random() * 800);
    const count = Number(state.dataset.reconnects || 0) + 1;
    state.dataset.reconnects = String(count);
    logLine(log, "system",
      `the proxy asked to reconnect${event.reason ? " (" + event.reason + ")" : ""}: ` +
      `reconnecting in ${wait} ms (reconnect ${count})`);
    setState(state, "reconnecting");
    setTimeout(connect, wait);
    return true;
  }

  function closeText(event) {
    const meaning = CLOSE_CODES[event.code] ? ` (${CLOSE_CODES[event.code]})` : "";
    const reason = event.reason ? `, reason "${event.reason}"` : "";
    return `closed: code ${event.code}${meaning}${reason}${event.wasClean ? "" : ", not clean"}`;
  }

  // Append a line to a log list, keeping it bounded and scrolled to the end.
  function logLine(list, kind, ...parts) {
    const item = document.createElement("li");
    item.className = kind;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = clock();
    const body = document.createElement("span");
    body.className = "body";
    for (const part of parts) body.append(part);
    item.append(time, body);
    list.append(item);
    while (list.children.length > MAX_LOG) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  function setState(element, state, text) {
    element.dataset.state = state;
    element.textContent = text || state;
  }

  // ---- What the backend saw -------------------------------------------------

  async function fetchInfo() {
    const response = await fetch("api/info", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  }

  function showInfo(info) {
    $("info-backend").replaceWith(Object.assign(tag(info.backend), { id: "info-backend" }));
    const rows = $("info-headers").tBodies[0];
    rows.replaceChildren();
    const entries = SHOWN.map((name) => [name, info.headers[name]]);
    entries.push(["Client (TCP peer)", info.client]);
    for (const [name, value] of entries) {
      const row = rows.insertRow();
      const th = document.createElement("th");
      th.textContent = name;
      const td = row.insertCell();
      row.prepend(th);
      if (value === null || value === undefined) {
        td.textContent = "not set";
        td.className = "absent";
      } else {
        td.textContent = value;
      }
    }
  }

  async function refreshInfo() {
    try {
      showInfo(await fetchInfo());
    } catch (error) {
      $("info-backend").textContent = `unreachable (${error.message})`;
    }
  }

  // ---- Balancing ------------------------------------------------------------

  async function runBalance(requests) {
    const button = $("balance-run");
    button.disabled = true;
    const counts = new Map();
    let failed = 0;
    for (let i = 0; i < requests; i++) {
      try {
        const info = await fetchInfo();
        counts.set(info.backend, (counts.get(info.backend) || 0) + 1);
      } catch (error) {
        failed += 1;
      }
      drawBars(counts, failed, i + 1);
    }
    button.disabled = false;
  }

  function drawBars(counts, failed, total) {
    const bars = $("balance-bars");
    bars.replaceChildren();
    const rows = [...counts.entries()].sort();
    if (failed) rows.push(["failed", failed]);
    for (const [name, count] of rows) {
      const bar = document.createElement("div");
      bar.className = "bar";
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(100 * count) / total}%`;
      fill.style.setProperty("--c", name === "failed" ? "var(--bad)" : colorOf(name));
      track.append(fill);
      const number = document.createElement("span");
      number.className = "count";
      number.textContent = count;
      bar.append(name === "failed" ? name : tag(name), track, number);
      bars.append(bar);
    }
  }

  // ---- Echo -----------------------------------------------------------------

  const echo = { socket: null, pending: [] };

  function randomBytes(size) {
    const bytes = new Uint8Array(size);
    for (let offset = 0; offset < size; offset += 65536) {
      crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65536)));
    }
    return bytes;
  }

  function sameBytes(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  function echoConnect() {
    const log = $("echo-log");
    const socket = new WebSocket(socketUrl("echo"), ["echo.v1"]);
    socket.binaryType = "arraybuffer";
    echo.socket = socket;
    echo.pending = [];
    setState($("echo-state"), "connecting");
    $("echo-toggle").textContent = "Disconnect";
    socket.onopen = () => {
      setState($("echo-state"), "open");
      $("echo-details").textContent =
        `${socket.url} · subprotocol ${socket.protocol || "none"}` +
        ` · extensions ${socket.extensions || "none"}`;
      logLine(log, "system", "connected");
    };
    socket.onmessage = (event) => {
      const sent = echo.pending.shift();
      if (!sent) return;
      const ms = (performance.now() - sent.start).toFixed(1);
      if (typeof event.data === "string") {
        const ok = event.data === sent.payload;
        logLine(log, ok ? "" : "error",
          `text ${formatBytes(new TextEncoder().encode(event.data).length)} back in ${ms} ms` +
          (ok ? "" : " — MISMATCH") + `: “${event.data.slice(0, 80)}”`);
      } else {
        const ok = sameBytes(new Uint8Array(event.data), sent.payload);
        logLine(log, ok ? "" : "error",
          `binary ${formatBytes(event.data.byteLength)} back in ${ms} ms` +
          (ok ? ", identical" : " — MISMATCH"));
      }
    };
    socket.onerror = () => setState($("echo-state"), "error");
    socket.onclose = (event) => {
      setState($("echo-state"), "closed");
      $("echo-details").textContent = closeText(event);
      $("echo-toggle").textContent = "Connect";
      logLine(log, "system", closeText(event));
      if (echo.socket === socket) {
        echo.socket = null;
        reconnectLater($("echo-state"), log, event, () => echo.socket || echoConnect());
      }
    };
  }

  function echoSend(payload) {
    const socket = echo.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      logLine($("echo-log"), "error", "not connected");
      return;
    }
    echo.pending.push({ payload, start: performance.now() });
    socket.send(payload);
  }

  function setUpEcho() {
    $("echo-toggle").onclick = () => {
      if (echo.socket) echo.socket.close(1000, "user disconnected");
      else echoConnect();
    };
    $("echo-text-form").onsubmit = (event) => {
      event.preventDefault();
      echoSend($("echo-text").value);
    };
    $("echo-binary-form").onsubmit = (event) => {
      event.preventDefault();
      const size = Math.max(1, Math.min(64 * 1024 * 1024, Number($("echo-size").value) || 1));
      echoSend(randomBytes(size));
    };
    echoConnect();
  }

  // ---- Chat -----------------------------------------------------------------

  const chat = { socket: null };

  function chatConnect() {
    const log = $("chat-log");
    const socket = new WebSocket(socketUrl("chat"), ["chat.v1"]);
    chat.socket = socket;
    setState($("chat-state"), "connecting");
    $("chat-toggle").textContent = "Disconnect";
    socket.onopen = () => setState($("chat-state"), "open");
    socket.onmessage = (event) => chatEvent(log, JSON.parse(event.data));
    socket.onerror = () => setState($("chat-state"), "error");
    socket.onclose = (event) => {
      setState($("chat-state"), "closed");
      $("chat-details").textContent = closeText(event);
      $("chat-members").textContent = "–";
      $("chat-toggle").textContent = "Connect";
      logLine(log, "system", closeText(event));
      if (chat.socket === socket) {
        chat.socket = null;
        reconnectLater($("chat-state"), log, event, () => chat.socket || chatConnect());
      }
    };
  }

  function chatEvent(log, event) {
    if (event.members !== undefined) $("chat-members").textContent = event.members;
    const when = event.time ? new Date(event.time) : new Date();
    switch (event.type) {
      case "welcome":
        $("chat-details").textContent = "Joined through ";
        $("chat-details").append(tag(event.backend));
        logLine(log, "system", "joined the room through ", tag(event.backend));
        break;
      case "message": {
        const nick = document.createElement("span");
        nick.className = "nick";
        nick.textContent = event.nick;
        logLine(log, "", nick, ": ", event.text, " ", tag(event.backend));
        break;
      }
      case "presence": {
        const who = event.nick || "someone";
        const verb = event.event === "join" ? "joined through " : "left from ";
        logLine(log, "system", `${who} ${verb}`, tag(event.backend));
        break;
      }
      case "tick": {
        const tick = $("chat-tick");
        tick.textContent = `· server tick ${clock(when)}`;
        tick.classList.remove("flash");
        void tick.offsetWidth;
        tick.classList.add("flash");
        break;
      }
      case "error":
        logLine(log, "error", `server: ${event.error}`);
        break;
    }
  }

  function setUpChat() {
    const nick = $("chat-nick");
    nick.value = localStorage.getItem("clbproxy-demo-nick") ||
      "guest-" + Math.floor(1000 + Math.random() * 9000);
    nick.onchange = () => localStorage.setItem("clbproxy-demo-nick", nick.value);
    $("chat-toggle").onclick = () => {
      if (chat.socket) chat.socket.close(1000, "user disconnected");
      else chatConnect();
    };
    $("chat-form").onsubmit = (event) => {
      event.preventDefault();
      const text = $("chat-text");
      if (!chat.socket || chat.socket.readyState !== WebSocket.OPEN) {
        logLine($("chat-log"), "error", "not connected");
        return;
      }
      if (!text.value.trim()) return;
      chat.socket.send(JSON.stringify({ type: "say", nick: nick.value, text: text.value }));
      text.value = "";
    };
    chatConnect();
  }

  // ---- Start ----------------------------------------------------------------

  const served = document.body.dataset.backend;
  $("served-by").style.setProperty("--c", colorOf(served));
  $("info-refresh").onclick = refreshInfo;
  $("balance-run").onclick = () => runBalance(20);
  refreshInfo().then(() => runBalance(10));
  setUpEcho();
  setUpChat();
})();
