// Load driver of `cargo xtask bench realtime` (the same client for both servers).
// Usage: node realtime_bench.mjs '<json spec>'
//   spec: {mode: "fanout"|"idle", origin, path, token, channel, subscribers, messages, window, sockets}
// fanout: `subscribers` sockets subscribe to `channel`; one publisher sends
//   `messages` 64-byte payloads keeping `window` publishes in flight; prints
//   {deliveries, seconds, deliveries_per_sec, p50_ms, p99_ms}.
// idle: opens `sockets` sockets, prints "ready", holds them until stdin closes.
import { io } from "socket.io-client";

const spec = JSON.parse(process.argv[2]);
const opts = () => ({ path: spec.path, auth: { token: spec.token }, transports: ["websocket"], reconnection: false, forceNew: true, timeout: 60000 });

async function open(n) {
  const sockets = [];
  const batch = 200;
  for (let i = 0; i < n; i += batch) {
    const group = [];
    for (let j = i; j < Math.min(n, i + batch); j++) {
      const s = io(spec.origin, opts());
      sockets.push(s);
      group.push(new Promise((res, rej) => { s.once("connect", res); s.once("connect_error", rej); }));
    }
    await Promise.all(group);
  }
  return sockets;
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function fanout() {
  const subs = await open(spec.subscribers);
  await Promise.all(subs.map((s) => s.timeout(60000).emitWithAck("realtime:subscribe", { channel: spec.channel, presence: false })));
  const [pub] = await open(1);
  const total = spec.messages * spec.subscribers;
  const latencies = new Float64Array(total);
  let received = 0;
  let done;
  const finished = new Promise((r) => { done = r; });
  const pad = "x".repeat(40);
  for (const s of subs) {
    s.on("bench", (m) => {
      latencies[received++] = performance.now() - m.t;
      if (received === total) done();
    });
  }
  const started = performance.now();
  let sent = 0;
  let inFlight = 0;
  await new Promise((resolve) => {
    const pump = () => {
      while (inFlight < spec.window && sent < spec.messages) {
        sent++;
        inFlight++;
        pub.timeout(60000).emitWithAck("realtime:publish", { channel: spec.channel, event: "bench", payload: { t: performance.now(), p: pad } })
          .then(() => { inFlight--; if (sent === spec.messages && inFlight === 0) resolve(); else pump(); })
          .catch(() => { inFlight--; pump(); });
      }
    };
    pump();
  });
  const timeout = new Promise((r) => setTimeout(r, 120000));
  await Promise.race([finished, timeout]);
  const seconds = (performance.now() - started) / 1000;
  const sorted = Array.from(latencies.subarray(0, received)).sort((a, b) => a - b);
  console.log(JSON.stringify({
    deliveries: received, expected: total, seconds,
    deliveries_per_sec: received / seconds,
    p50_ms: percentile(sorted, 50), p99_ms: percentile(sorted, 99),
  }));
  for (const s of [...subs, pub]) s.disconnect();
}

async function idle() {
  const sockets = await open(spec.sockets);
  console.log("ready");
  process.stdin.resume();
  process.stdin.on("end", () => { for (const s of sockets) s.disconnect(); process.exit(0); });
}

await ({ fanout, idle })[spec.mode]();
if (spec.mode === "fanout") process.exit(0);
