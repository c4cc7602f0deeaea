// socket.io-client (unmodified) against the Ferrobase realtime hub.
// Usage: node realtime_js.mjs '<json spec>'  (spec written by server/tests/it/realtime)
// Prints "checks passed" when every check held; exits 1 with the failures otherwise.
import { io } from "socket.io-client";

const spec = JSON.parse(process.argv[2]);
const failures = [];
const check = (name, cond, detail) => {
  if (!cond) failures.push(`${name}: ${detail === undefined ? "" : JSON.stringify(detail)}`);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function socketPath(projectUrl) {
  return new URL(projectUrl).pathname.replace(/\/$/, "") + "/realtime/v1/socket.io";
}

function connect(projectUrl, token, transports = spec.transports || ["websocket"]) {
  const origin = new URL(projectUrl).origin;
  const s = io(origin, {
    path: socketPath(projectUrl),
    auth: token === undefined ? undefined : { token },
    transports,
    reconnection: false,
    forceNew: true,
    timeout: 5000,
  });
  return s;
}

function connected(s) {
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(e));
  });
}

function connectError(s) {
  return new Promise((resolve) => {
    s.once("connect", () => resolve(null));
    s.once("connect_error", (e) => resolve(e));
  });
}

// Waits for `event` on `s` matching `pred`, or null after `ms`.
function next(s, event, pred = () => true, ms = 5000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.off(event, on);
      resolve(null);
    }, ms);
    const on = (data) => {
      if (pred(data)) {
        clearTimeout(timer);
        s.off(event, on);
        resolve(data);
      }
    };
    s.on(event, on);
  });
}

const ack = (s, event, data) => s.timeout(5000).emitWithAck(event, data);

async function basic() {
  const a = await connected(connect(spec.url, spec.anon));
  const b = await connected(connect(spec.url, spec.userA));

  // Subscribe, presence.
  const subA = await ack(a, "realtime:subscribe", { channel: "public:lobby", state: { name: "anon" } });
  check("subscribe ack ok", subA.ok === true && subA.channel === "public:lobby", subA);
  check("own presence listed", subA.presence?.members?.some((m) => m.presenceId === a.id), subA);
  const joined = next(a, "presence:join", (m) => m.presenceId === b.id);
  const subB = await ack(b, "realtime:subscribe", { channel: "public:lobby" });
  check("second subscribe ok", subB.ok === true && subB.presence.members.length >= 2, subB);
  const j = await joined;
  check("presence:join seen", j && j.type === "user" && j.channel === "public:lobby", j);

  // Publish with ack; the other side receives payload + meta.
  const got = next(a, "chat", (m) => m.text === "hello");
  const pub = await ack(b, "realtime:publish", { channel: "public:lobby", event: "chat", payload: { text: "hello" } });
  check("publish ack", pub.ok === true && typeof pub.messageId === "string", pub);
  const m = await got;
  check("message delivered", m && m.meta?.channel === "public:lobby" && m.meta.senderType === "user"
    && m.meta.senderId === spec.userASub && m.meta.messageId === pub.messageId, m);

  // History.
  const hist = await ack(a, "realtime:history", { channel: "public:lobby", limit: 10 });
  check("history has it", hist.ok && hist.messages.some((x) => x.event === "chat" && x.payload.text === "hello"), hist);
  const after = await ack(a, "realtime:history", { channel: "public:lobby", since: pub.messageId });
  check("history since excludes it", after.ok && after.messages.length === 0, after);

  // presence:update reaches the other member.
  const upd = next(b, "presence:update", (x) => x.presenceId === a.id);
  const pu = await ack(a, "presence:update", { channel: "public:lobby", state: { typing: true } });
  check("presence update ack", pu.ok === true, pu);
  const u = await upd;
  check("presence:update seen", u && u.state?.typing === true, u);

  // Bad input: realtime:error, socket stays connected.
  const errs = [];
  a.on("realtime:error", (e) => errs.push(e));
  a.emit("no:such:event", { x: 1 });
  const bad1 = await ack(a, "realtime:subscribe", { channel: "bad channel" });
  check("malformed channel", bad1.ok === false && bad1.error.code === "invalid_channel", bad1);
  const bad2 = await ack(a, "realtime:publish", { channel: "public:lobby", event: "big", payload: { x: "y".repeat(100 * 1024) } });
  check("oversized payload", bad2.ok === false && bad2.error.code === "payload_too_large", bad2);
  const bad3 = await ack(a, "realtime:publish", { channel: "public:lobby", event: "connect", payload: {} });
  check("reserved event", bad3.ok === false && bad3.error.code === "invalid_event", bad3);
  const bad4 = await ack(a, "realtime:subscribe", { channel: "nowhere:1" });
  check("undefined channel", bad4.ok === false && bad4.error.code === "channel_not_found", bad4);
  const bad5 = await ack(a, "realtime:publish", "not an object");
  check("non-object publish", bad5.ok === false && bad5.error.code === "invalid_payload", bad5);
  const bad6 = await ack(a, "realtime:publish", { channel: "db:public:todos", event: "x", payload: {} });
  check("publish on change channel", bad6.ok === false && bad6.error.code === "read_only_channel", bad6);
  await sleep(200);
  check("unknown event error", errs.some((e) => e.code === "unknown_event"), errs);
  check("still connected after bad input", a.connected, a.connected);
  const stillOk = await ack(a, "realtime:publish", { channel: "public:lobby", event: "chat", payload: { text: "after" } });
  check("publish after bad input", stillOk.ok === true, stillOk);

  // Leave: the other member sees presence:leave.
  const bId = b.id; // socket.io-client forgets its id on disconnect
  const left = next(a, "presence:leave", (x) => x.presenceId === bId);
  b.disconnect();
  check("presence:leave on disconnect", (await left) !== null, "no presence:leave");

  // Handshake refusals.
  for (const [name, token] of [["forged", spec.forged], ["other project", spec.otherProjectKey], ["expired", spec.expired], ["missing", undefined]]) {
    const e = await connectError(connect(spec.url, token));
    check(`connect_error for ${name} token`, e && typeof e.message === "string" && e.message.length > 0, e && e.message);
  }
  a.disconnect();
}

async function rls() {
  // room:{sub} is readable and writable by that user only (policies in the test).
  const A = await connected(connect(spec.url, spec.userA));
  const B = await connected(connect(spec.url, spec.userB));
  const N = await connected(connect(spec.url, spec.anon));
  const S = await connected(connect(spec.url, spec.service));
  const roomA = `room:${spec.userASub}`;
  const cases = [
    ["A subscribes own room", A, "realtime:subscribe", { channel: roomA }, true],
    ["B subscribes A's room", B, "realtime:subscribe", { channel: roomA }, false],
    ["anon subscribes A's room", N, "realtime:subscribe", { channel: roomA }, false],
    ["service subscribes A's room", S, "realtime:subscribe", { channel: roomA, presence: false }, true],
    ["A publishes own room", A, "realtime:publish", { channel: roomA, event: "e", payload: { n: 1 } }, true],
    ["B publishes A's room", B, "realtime:publish", { channel: roomA, event: "e", payload: { n: 2 } }, false],
    ["anon publishes A's room", N, "realtime:publish", { channel: roomA, event: "e", payload: { n: 3 } }, false],
    ["service publishes A's room", S, "realtime:publish", { channel: roomA, event: "e", payload: { n: 4 } }, true],
    ["B history of A's room", B, "realtime:history", { channel: roomA }, false],
    ["A history of own room", A, "realtime:history", { channel: roomA }, true],
    ["read-only: A subscribes announce", A, "realtime:subscribe", { channel: "announce:all" }, true],
    ["read-only: A publishes announce", A, "realtime:publish", { channel: "announce:all", event: "e", payload: {} }, false],
    ["disabled channel", A, "realtime:subscribe", { channel: "off:1" }, false],
  ];
  for (const [name, s, ev, data, allowed] of cases) {
    const r = await ack(s, ev, data);
    check(name, r.ok === allowed && (allowed || ["forbidden", "channel_disabled"].includes(r.error?.code)), r);
  }
  // Delivered: A and service got the two allowed messages, nobody else anything.
  await sleep(500);
  const hist = await ack(A, "realtime:history", { channel: roomA });
  check("only allowed messages stored", hist.ok && hist.messages.map((m) => m.payload.n).join(",") === "1,4", hist);
  for (const s of [A, B, N, S]) s.disconnect();
}

async function cross() {
  // A subscriber on node A; a publisher, a member and a REST write on node B.
  const subA = await connected(connect(spec.url, spec.userA));
  const pubB = await connected(connect(spec.urlB, spec.userB));
  const r1 = await ack(subA, "realtime:subscribe", { channel: "public:lobby" });
  check("A subscribed", r1.ok, r1);
  const r2 = await ack(subA, "realtime:subscribe", { channel: "db:public:todos" });
  check("A subscribed to changes", r2.ok, r2);
  const joined = next(subA, "presence:join", (m) => m.presenceId === pubB.id);
  const r3 = await ack(pubB, "realtime:subscribe", { channel: "public:lobby" });
  check("B subscribed", r3.ok, r3);
  check("B sees A's presence (other node)", r3.presence.members.some((m) => m.presenceId === subA.id), r3);
  check("A sees B join (other node)", (await joined) !== null, "no presence:join from node B");
  const got = next(subA, "chat", (m) => m.n === 42);
  const p = await ack(pubB, "realtime:publish", { channel: "public:lobby", event: "chat", payload: { n: 42 } });
  check("publish on B", p.ok, p);
  check("publish on B reaches A", (await got) !== null, "not delivered across nodes");
  // A REST insert through node B reaches A's change subscriber (own row only).
  const change = next(subA, "INSERT", (m) => m.record?.title === "from B");
  const res = await fetch(`${spec.urlB}/rest/v1/todos`, {
    method: "POST",
    headers: { apikey: spec.anon, authorization: `Bearer ${spec.userA}`, "content-type": "application/json" },
    body: JSON.stringify({ title: "from B" }),
  });
  check("REST insert on B", res.status === 201, res.status);
  const c = await change;
  check("change reaches A", c && c.schema === "public" && c.table === "todos" && c.type === "INSERT"
    && c.old_record === null && typeof c.commit_timestamp === "string" && c.meta?.channel === "db:public:todos", c);
  const bId = pubB.id;
  const left = next(subA, "presence:leave", (m) => m.presenceId === bId);
  pubB.disconnect();
  check("leave seen across nodes", (await left) !== null, "no presence:leave");
  subA.disconnect();
}


async function rest(method, path, token, body) {
  const res = await fetch(`${spec.url}/rest/v1/${path}`, {
    method,
    headers: { apikey: spec.anon, authorization: `Bearer ${token}`, "content-type": "application/json", prefer: "return=representation" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function collect(s, events) {
  const seen = [];
  for (const e of events) s.on(e, (d) => seen.push({ e, d }));
  return seen;
}

async function changes() {
  const A = await connected(connect(spec.url, spec.userA));
  const A2 = await connected(connect(spec.url, spec.userA));
  const B = await connected(connect(spec.url, spec.userB));
  const N = await connected(connect(spec.url, spec.anon));
  const S = await connected(connect(spec.url, spec.service));
  const ops = ["INSERT", "UPDATE", "DELETE"];
  const seen = { A: collect(A, ops), A2: collect(A2, ops), B: collect(B, ops), N: collect(N, ops), S: collect(S, ops) };
  for (const [s, ch] of [[A, "db:public:todos"], [B, "db:public:todos"], [N, "db:public:todos"], [S, "db:public:todos"], [A2, "db:public:todos:title=eq.special"]]) {
    const r = await ack(s, "realtime:subscribe", { channel: ch });
    check(`subscribe ${ch}`, r.ok, r);
  }
  const bad = await ack(A, "realtime:subscribe", { channel: "db:public:nope" });
  check("changes not enabled", bad.ok === false && bad.error.code === "changes_not_enabled", bad);
  const bad2 = await ack(A, "realtime:subscribe", { channel: "db:public:todos:title=gt.1" });
  check("bad filter", bad2.ok === false && bad2.error.code === "invalid_channel", bad2);

  const a1 = await rest("POST", "todos", spec.userA, { title: "a1" });
  check("insert a1", a1.status === 201, a1);
  const sp = await rest("POST", "todos", spec.userA, { title: "special" });
  check("insert special", sp.status === 201, sp);
  const b1 = await rest("POST", "todos", spec.userB, { title: "b1" });
  check("insert b1", b1.status === 201, b1);
  const id = a1.body[0].id;
  // Updated then deleted at once: each change is judged on the row it
  // captured, so the update still reaches A although the row is gone.
  const up = await rest("PATCH", `todos?id=eq.${id}`, spec.userA, { done: true });
  check("update a1", up.status === 200, up);
  const del = await rest("DELETE", `todos?id=eq.${id}`, spec.userA);
  check("delete a1", del.status === 200, del);
  await sleep(1500);

  const titles = (list, op) => list.filter((x) => x.e === op).map((x) => (x.d.record || x.d.old_record).title).sort().join(",");
  check("A sees own inserts only", titles(seen.A, "INSERT") === "a1,special", seen.A);
  check("B sees own insert only", titles(seen.B, "INSERT") === "b1", seen.B);
  check("anon sees nothing", seen.N.length === 0, seen.N);
  check("service sees all inserts", titles(seen.S, "INSERT") === "a1,b1,special", seen.S);
  check("filtered subscriber sees the match only", titles(seen.A2, "INSERT") === "special" && seen.A2.length === 1, seen.A2);
  const upd = seen.A.find((x) => x.e === "UPDATE");
  check("A sees update with old_record", upd && upd.d.record.done === true && upd.d.old_record.done === false
    && upd.d.type === "UPDATE" && upd.d.meta.channel === "db:public:todos", upd);
  check("B does not see A's update", !seen.B.some((x) => x.e === "UPDATE"), seen.B);
  const dA = seen.A.find((x) => x.e === "DELETE");
  check("A sees own delete", dA && dA.d.record === null && dA.d.old_record.id === id && dA.d.old_record.title === "a1", dA);
  check("B does not see A's delete", !seen.B.some((x) => x.e === "DELETE"), seen.B);
  const dS = seen.S.find((x) => x.e === "DELETE");
  check("service sees the delete", dS && dS.d.old_record.title === "a1", dS);
  for (const s of [A, A2, B, N, S]) s.disconnect();
}

async function expiry() {
  const X = await connected(connect(spec.url, spec.shortLived));
  const Y = await connected(connect(spec.url, spec.shortLived));
  const expired = next(X, "realtime:error", (e) => e.code === "token_expired", 8000);
  const gone = new Promise((r) => X.once("disconnect", () => r(true)));
  const badAuth = await ack(Y, "realtime:auth", { token: "nope" });
  check("bad refresh refused", badAuth.ok === false, badAuth);
  const fresh = await ack(Y, "realtime:auth", { token: spec.userA });
  check("fresh token accepted", fresh.ok === true, fresh);
  check("expired socket told why", (await expired) !== null, "no token_expired");
  check("expired socket disconnected", await Promise.race([gone, sleep(3000).then(() => false)]), "still connected");
  await sleep(500);
  check("refreshed socket still connected", Y.connected, Y.connected);
  const r = await ack(Y, "realtime:subscribe", { channel: `room:${spec.userASub}` });
  check("refreshed socket works", r.ok, r);
  Y.disconnect();
}

// Limits set by the test: 2 sockets per project, 1 channel per socket,
// 5 events a second with a burst of 2.
async function limits() {
  const a = await connected(connect(spec.url, spec.anon));
  const b = await connected(connect(spec.url, spec.service));

  // A third socket is refused at the handshake, and the client (with its
  // default reconnection on) does not retry: no reconnect storm.
  const c = io(new URL(spec.url).origin, {
    path: socketPath(spec.url),
    auth: { token: spec.anon },
    transports: ["websocket"],
    forceNew: true,
    reconnectionDelay: 50,
  });
  let attempts = 0;
  c.on("connect_error", () => attempts++);
  const refused = await connectError(c);
  check("third socket refused", refused && refused.message.startsWith("too_many_sockets:"), refused && refused.message);
  await sleep(500);
  check("refused client does not retry", !c.active && !c.connected && attempts === 1, { active: c.active, attempts });
  c.close();

  // The second channel of a socket: the usual error ack, and realtime:error.
  const one = await ack(a, "realtime:subscribe", { channel: "public:one" });
  check("first channel", one.ok === true, one);
  const told = next(a, "realtime:error", (e) => e.code === "too_many_channels");
  const two = await ack(a, "realtime:subscribe", { channel: "public:two" });
  check("second channel refused", two.ok === false && two.channel === "public:two" && two.error?.code === "too_many_channels", two);
  check("realtime:error names the channel", (await told)?.channel === "public:two", "none");

  // A burst of publishes: the excess is refused with retryAfterMs.
  const results = await Promise.all(
    [0, 1, 2, 3, 4, 5].map((n) => ack(b, "realtime:publish", { channel: "public:burst", event: "chat", payload: { n } })),
  );
  const limited = results.filter((r) => r.ok === false);
  check("burst partly refused", limited.length > 0 && results.some((r) => r.ok), results);
  check(
    "refusals say when to retry",
    limited.every((r) => r.error?.code === "rate_limited" && Number.isInteger(r.error.retryAfterMs) && r.error.retryAfterMs > 0),
    limited,
  );
  check("limited socket stays connected", b.connected, b.connected);
  await sleep(Math.max(0, ...limited.map((r) => r.error?.retryAfterMs ?? 0)) + 20);
  const again = await ack(b, "realtime:publish", { channel: "public:burst", event: "chat", payload: { n: "again" } });
  check("works again after retryAfterMs", again.ok === true, again);
  a.disconnect();
  b.disconnect();
}

const scenarios = { basic, rls, cross, changes, expiry, limits };
try {
  await scenarios[spec.scenario]();
} catch (e) {
  failures.push(`exception: ${e && e.stack ? e.stack : e}`);
}
if (failures.length) {
  console.log(failures.join("\n"));
  process.exit(1);
}
console.log("checks passed");
process.exit(0);
