// clbproxy benchmark: the echo backend and the WebSocket load generator (Node + ws).
//
//   node load.js server PORT [deflate]            echo backend (WS echo + small HTTP GET), prints "listening PORT";
//                                                 with "deflate" it accepts permessage-deflate offers
//   node load.js closed URL SESSIONS SIZE BINARY SECONDS     closed loop: each session sends, awaits echo, repeats
//   node load.js rate URL SESSIONS SIZE RATE SECONDS         open loop at RATE msgs/s in total
//   node load.js handshake URL PARALLEL SECONDS              connect + one 64 B echo + close, PARALLEL at once
//   node load.js idle URL SESSIONS                           open SESSIONS and hold them until stdin closes
//   node load.js tlshake URL PARALLEL SECONDS full|resumed   handshake over wss://, counting TLS resumptions
//   node load.js hold URL[,URL...]                           scale curve: reads "open N" lines on stdin, opens
//                                                            N more idle sessions, prints "opened N MS ALIVE LOST"
//   node load.js probe URL ECHOES [GAP_MS BURSTS]            one session, ECHOES sequential 64 B echoes (p99),
//                                                            in BURSTS bursts GAP_MS apart
//
// The echo backend answers a GET at once and any other method after reading (and discarding)
// the request body, with the same short 200.
// URL is ws:// or wss:// (TLS, certificate not verified: the bench's own self-signed one).
// CLB_BENCH_DEFLATE=1: the clients offer permessage-deflate (a backend started without
// "deflate" declines it).
//
// Load modes print "window-start" when the measured window begins, "window-end" when it ends
// (bench/run.py samples the proxy's CPU time at those lines), then one JSON line of results.
// Everything runs on 127.0.0.1; run.py passes only loopback URLs.
"use strict";

const http = require("http");
const tls = require("tls");
const { WebSocket, WebSocketServer } = require("ws");
const { performance } = require("perf_hooks");

const WARMUP_MS = 1000;
const mode = process.argv[2];
const args = process.argv.slice(3);

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length));
  return sorted[i];
}

function report(result, latencies) {
  if (latencies) {
    const sorted = Float64Array.from(latencies).sort();
    result.p50_ms = percentile(sorted, 50);
    result.p99_ms = percentile(sorted, 99);
    result.samples = sorted.length;
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

// With CLB_BENCH_DEFLATE=1 the clients offer permessage-deflate and compress every message
// (threshold 0), as browsers do.
const DEFLATE = process.env.CLB_BENCH_DEFLATE === "1" ? { threshold: 0 } : false;

// wss:// URLs reach a proxy serving run.py's self-signed certificate for 127.0.0.1: not verified.
function openSocket(url) {
  return new WebSocket(url, {
    perMessageDeflate: DEFLATE,
    skipUTF8Validation: false,
    rejectUnauthorized: false,
  });
}

function server(port, deflate) {
  const body = Buffer.from("hello from the benchmark backend\n");
  const answer = (res) => {
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": body.length });
    res.end(body);
  };
  const srv = http.createServer((req, res) => {
    if (req.method === "GET") return answer(res);
    req.on("data", () => {});
    req.on("end", () => answer(res));
  });
  srv.keepAliveTimeout = 120000;
  const wss = new WebSocketServer({
    server: srv,
    perMessageDeflate: deflate === "deflate" ? { threshold: 0 } : false,
    maxPayload: 0,
  });
  wss.on("connection", (ws) => {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on("error", () => {});
  });
  srv.listen(Number(port), "127.0.0.1", () => {
    console.log(`listening ${srv.address().port}`);
  });
}

// Runs fn(measuring) for warmup + seconds; calls done() after.
function windowed(seconds, onStart, onEnd) {
  setTimeout(() => {
    onStart();
    console.log("window-start");
    setTimeout(() => {
      console.log("window-end");
      onEnd();
    }, seconds * 1000);
  }, WARMUP_MS);
}

function connectAll(url, n, onEach) {
  return new Promise((resolve, reject) => {
    let opened = 0;
    for (let i = 0; i < n; i++) {
      const ws = openSocket(url);
      ws.on("error", (e) => reject(e));
      ws.on("open", () => {
        onEach(ws, i);
        if (++opened === n) resolve();
      });
    }
  });
}

async function closed(url, sessions, size, binary, seconds) {
  const payload = binary ? Buffer.alloc(size, 0xab) : "x".repeat(size);
  let measuring = false;
  let count = 0;
  let bytes = 0;
  const latencies = [];
  const sockets = [];
  await connectAll(url, sessions, (ws) => sockets.push(ws));
  for (const ws of sockets) {
    let sent = 0;
    ws.on("message", (data) => {
      if (measuring) {
        latencies.push(performance.now() - sent);
        count++;
        bytes += data.length;
      }
      sent = performance.now();
      ws.send(payload, { binary });
    });
    sent = performance.now();
    ws.send(payload, { binary });
  }
  let t0 = 0;
  windowed(
    seconds,
    () => {
      measuring = true;
      t0 = performance.now();
    },
    () => {
      measuring = false;
      const elapsed = (performance.now() - t0) / 1000;
      report({ msgs: count, bytes, seconds: elapsed }, latencies);
      process.exit(0);
    },
  );
}

async function rate(url, sessions, size, perSecond, seconds) {
  const payload = "x".repeat(size);
  let measuring = false;
  let count = 0;
  const latencies = [];
  const sockets = [];
  await connectAll(url, sessions, (ws) => {
    const sentAt = [];
    ws.on("message", () => {
      const t = sentAt.shift();
      if (measuring && t !== undefined) {
        latencies.push(performance.now() - t);
        count++;
      }
    });
    sockets.push({ ws, sentAt });
  });
  const start = performance.now();
  let sent = 0;
  let next = 0;
  const tick = () => {
    const due = Math.floor(((performance.now() - start) / 1000) * perSecond);
    while (sent < due) {
      const s = sockets[next];
      next = (next + 1) % sockets.length;
      s.sentAt.push(performance.now());
      s.ws.send(payload);
      sent++;
    }
  };
  const timer = setInterval(tick, 1);
  let t0 = 0;
  windowed(
    seconds,
    () => {
      measuring = true;
      t0 = performance.now();
    },
    () => {
      measuring = false;
      clearInterval(timer);
      report({ msgs: count, seconds: (performance.now() - t0) / 1000, rate: perSecond }, latencies);
      process.exit(0);
    },
  );
}

function handshake(url, parallel, seconds) {
  let measuring = false;
  let count = 0;
  let errors = 0;
  let stopping = false;
  const latencies = [];
  const one = () => {
    if (stopping) return;
    const t = performance.now();
    const ws = openSocket(url);
    ws.on("open", () => ws.send("x".repeat(64)));
    ws.on("message", () => ws.close(1000));
    ws.on("error", () => {
      errors++;
    });
    ws.on("close", (code) => {
      if (measuring && code === 1000) {
        count++;
        latencies.push(performance.now() - t);
      }
      one();
    });
  };
  for (let i = 0; i < parallel; i++) one();
  let t0 = 0;
  windowed(
    seconds,
    () => {
      measuring = true;
      t0 = performance.now();
    },
    () => {
      measuring = false;
      stopping = true;
      report({ handshakes: count, errors, seconds: (performance.now() - t0) / 1000 }, latencies);
      process.exit(0);
    },
  );
}

// TLS handshakes: as handshake(), each connection's TLS socket made here so that its session
// can be offered to the next connect ("resumed": every connect offers the newest session
// ticket received) and tlsSocket.isSessionReused() counted in the window.
function tlshake(url, parallel, seconds, mode) {
  const resume = mode === "resumed";
  let measuring = false;
  let count = 0;
  let reused = 0;
  let errors = 0;
  let stopping = false;
  let session;
  const protocols = {};
  const latencies = [];
  const connect = (options) => {
    const socket = tls.connect({ ...options, session: resume ? session : undefined });
    if (resume) socket.on("session", (s) => (session = s));
    return socket;
  };
  const one = () => {
    if (stopping) return;
    const t = performance.now();
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      rejectUnauthorized: false,
      createConnection: connect,
    });
    let wasReused = false;
    ws.on("upgrade", (res) => {
      wasReused = res.socket.isSessionReused();
      const p = `${res.socket.getProtocol()} ${res.socket.getCipher().name}`;
      protocols[p] = (protocols[p] || 0) + 1;
    });
    ws.on("open", () => ws.send("x".repeat(64)));
    ws.on("message", () => ws.close(1000));
    ws.on("error", () => {
      errors++;
    });
    ws.on("close", (code) => {
      if (measuring && code === 1000) {
        count++;
        if (wasReused) reused++;
        latencies.push(performance.now() - t);
      }
      one();
    });
  };
  for (let i = 0; i < parallel; i++) one();
  let t0 = 0;
  windowed(
    seconds,
    () => {
      measuring = true;
      t0 = performance.now();
    },
    () => {
      measuring = false;
      stopping = true;
      const elapsed = (performance.now() - t0) / 1000;
      report({ handshakes: count, reused, errors, seconds: elapsed, protocols }, latencies);
      process.exit(0);
    },
  );
}

// The scale curve's client: holds every session it opened until stdin closes.  Each "open N"
// line opens N more (200 at a time), then prints "opened N MS ALIVE LOST" (MS: how long opening
// took, ALIVE: sessions open, LOST: sessions that closed).  URL may be several, comma-separated
// (one per proxy listener port): sessions go to them in turn, so that each (source, destination)
// pair needs no more than one ephemeral port range of connections.  (Binding source addresses
// instead would take the ports out of the range the proxy's own backend connections use: Node
// cannot set IP_BIND_ADDRESS_NO_PORT.)
function hold(urls) {
  const targets = urls.split(",");
  let alive = 0;
  let made = 0;
  let lost = 0;
  const sockets = [];
  const openOne = () =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(targets[made++ % targets.length], { perMessageDeflate: false });
      let opened = false;
      ws.on("error", reject);
      ws.on("open", () => {
        opened = true;
        alive++;
        sockets.push(ws);
        resolve();
      });
      ws.on("close", () => {
        if (!opened) return;
        alive--;
        lost++;
      });
    });
  const open = async (n) => {
    const t = performance.now();
    for (let i = 0; i < n; i += 200) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + 200); j++) batch.push(openOne());
      await Promise.all(batch);
    }
    console.log(`opened ${n} ${(performance.now() - t).toFixed(1)} ${alive} ${lost}`);
  };
  let queue = Promise.resolve();
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      const [command, n] = line.split(" ");
      if (command === "open") queue = queue.then(() => open(Number(n)));
      else if (command === "count") queue = queue.then(() => console.log(`alive ${alive} ${lost}`));
    }
  });
  process.stdin.on("end", () => process.exit(0));
  console.log("ready 0");
}

// One session, ECHOES sequential 64 B round trips: the latency a new message sees.  With
// BURSTS (the scale curve), the echoes come in BURSTS bursts, GAP_MS apart, each burst one
// echo more than its share, the first not counted: it wakes two idle processes on a virtual
// machine (a few ms there, whatever the proxy does).  Spread over whole ping intervals, the
// bursts meet the proxy's pings at every phase, as real messages would.
function probe(url, echoes, gap, bursts) {
  const ws = openSocket(url);
  const latencies = [];
  const perBurst = bursts > 0 ? Math.ceil(echoes / bursts) : echoes;
  let inBurst = 0;
  let sent = 0;
  const next = () => {
    sent = performance.now();
    ws.send("x".repeat(64));
  };
  ws.on("open", next);
  ws.on("message", () => {
    const ms = performance.now() - sent;
    if (bursts > 0 && inBurst++ === 0) return next(); // the wake-up echo
    latencies.push(ms);
    if (latencies.length >= echoes) {
      report({ echoes: latencies.length }, latencies);
      ws.close(1000);
      process.exit(0);
    }
    if (bursts > 0 && inBurst > perBurst) {
      inBurst = 0;
      return setTimeout(next, gap);
    }
    return next();
  });
  ws.on("error", (e) => {
    console.error(String(e));
    process.exit(1);
  });
}

async function idle(url, sessions) {
  const sockets = [];
  const batch = 200;
  for (let i = 0; i < sessions; i += batch) {
    await connectAll(url, Math.min(batch, sessions - i), (ws) => sockets.push(ws));
  }
  // One echo on every session, so each hop has seen a message (buffers allocated as in use).
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise((resolve) => {
          ws.once("message", resolve);
          ws.send("x".repeat(64));
        }),
    ),
  );
  console.log(`ready ${sockets.length}`);
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

function main() {
  const n = (i) => Number(args[i]);
  switch (mode) {
    case "server":
      return server(args[0] || 0, args[1]);
    case "closed":
      return closed(args[0], n(1), n(2), args[3] === "1", n(4));
    case "rate":
      return rate(args[0], n(1), n(2), n(3), n(4));
    case "handshake":
      return handshake(args[0], n(1), n(2));
    case "idle":
      return idle(args[0], n(1));
    case "tlshake":
      return tlshake(args[0], n(1), n(2), args[3]);
    case "hold":
      return hold(args[0]);
    case "probe":
      return probe(args[0], n(1), n(2) || 0, n(3) || 0);
    default:
      console.error("usage: see the top of bench/load.js");
      process.exit(2);
  }
}

process.on("unhandledRejection", (e) => {
  console.error(String(e));
  process.exit(1);
});
main();
