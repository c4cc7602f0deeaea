// Tests of the function host (host.ts), run with real Deno:
//
//   deno test --allow-read --allow-write --allow-run --allow-env --allow-net functions/host_test.ts
//
// (`cargo xtask test` runs them through server/tests/it/functions/host.rs.)
// Each test starts host.ts the way the server does (restricted permissions,
// a unix socket) and talks HTTP/1.1 to it over that socket.

const HOST = new URL("./host.ts", import.meta.url).pathname;
const DENO = Deno.execPath();

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

interface Running {
  child: Deno.ChildProcess;
  socket: string;
  lines: string[];
  done: Promise<void>;
}

async function start(code: string, allowEnv = "ONLY_THIS"): Promise<Running> {
  const dir = await Deno.makeTempDir({ prefix: "fb-host-test-" });
  await Deno.writeTextFile(`${dir}/index.ts`, code);
  const socket = `${dir}/s.sock`;
  const child = new Deno.Command(DENO, {
    args: [
      "run", "--no-prompt", "--no-remote", "--no-config",
      `--allow-read=${dir}`, `--allow-write=${socket}`, `--allow-net=unix:${socket}`,
      `--allow-env=${allowEnv}`,
      HOST, socket, `file://${dir}/index.ts`,
    ],
    env: { ONLY_THIS: "visible", NO_COLOR: "1" },
    clearEnv: true,
    // The server holds the host's stdin open for as long as it lives.
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const done = (async () => {
    const decoder = new TextDecoderStream();
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(decoder)) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (line === '{"ready":true}') ready();
      }
    }
    ready();
  })();
  child.stderr.cancel();
  await isReady;
  return { child, socket, lines, done };
}

async function request(socket: string, path: string, headers: Record<string, string> = {}) {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const head = Object.entries({ host: "fn.test", connection: "close", ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`).join("");
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\n${head}\r\n`));
  const raw = new TextDecoder().decode(
    new Uint8Array(await new Response(conn.readable).arrayBuffer()),
  );
  const [top, ...rest] = raw.split("\r\n\r\n");
  const status = Number(top.split(" ")[1]);
  let body = rest.join("\r\n\r\n");
  if (/transfer-encoding: chunked/i.test(top)) {
    // Small bodies: one chunk, "len\r\ndata\r\n0\r\n\r\n".
    body = body.split("\r\n")[1] ?? "";
  }
  return { status, head: top.toLowerCase(), body };
}

async function stop(r: Running) {
  try { r.child.kill("SIGKILL"); } catch { /* already gone */ }
  await r.child.status;
  await r.done;
  try { await r.child.stdin.close(); } catch { /* already closed */ }
}

Deno.test("the host exits when its server is gone (its stdin closes)", async () => {
  const r = await start(`export default { fetch() { return new Response("ok"); } };`);
  try {
    const res = await request(r.socket, "/fn");
    assert(res.status === 200, `alive first: ${res.status}`);
    // What a killed server leaves: its end of the pipe closed by the kernel.
    await r.child.stdin.close();
    const timeout = new Promise<"timeout">((done) => setTimeout(() => done("timeout"), 10_000));
    const status = await Promise.race([r.child.status, timeout]);
    assert(status !== "timeout", "the host outlived its server");
    assert(status.code === 0, `exit code ${status.code}`);
  } finally {
    await stop(r);
  }
});

Deno.test("the liveness probe is answered by the host, never by the function", async () => {
  const r = await start(`export default { fetch() {
    console.log("called");
    return new Response("from the function");
  } };`);
  try {
    const res = await request(r.socket, "/", { "x-ferrobase-probe": "1" });
    assert(res.status === 204, `probe: ${res.status}`);
    assert(!r.lines.some((l) => l.includes("called")), `the function ran: ${r.lines}`);
    // With an invocation id, the header is nothing special: the function answers.
    const inv = await request(r.socket, "/fn", {
      "x-ferrobase-probe": "1",
      "x-ferrobase-invocation-id": "inv-1",
    });
    assert(inv.status === 200 && inv.body === "from the function", `invocation: ${inv.status}`);
  } finally {
    await stop(r);
  }
});

Deno.test("a default-export function answers with the client's URL and tagged logs", async () => {
  const r = await start(`export default { fetch(req) {
    console.log("seen", new URL(req.url).pathname);
    return Response.json({ url: req.url, env: Deno.env.get("ONLY_THIS"), other: Deno.env.get("HOME") ?? null });
  } };`);
  try {
    const res = await request(r.socket, "/fn/x?y=1", {
      "x-ferrobase-invocation-id": "inv-1",
      "x-forwarded-proto": "https",
      "x-forwarded-host": "api.example.com",
    });
    assert(res.status === 200, `status ${res.status}`);
    const body = JSON.parse(res.body);
    assert(body.url === "https://api.example.com/fn/x?y=1", `url ${body.url}`);
    assert(body.env === "visible", "own env var");
    assert(body.other === null, "another variable reads as unset");
    const log = r.lines.map((l) => JSON.parse(l)).find((l) => l.m === "seen /fn/x");
    assert(log && log.i === "inv-1" && log.l === "log", `log line ${JSON.stringify(r.lines)}`);
  } finally {
    await stop(r);
  }
});

Deno.test("clones and copies of the request keep the client's URL, bodies still arrive", async () => {
  const r = await start(`export default { async fetch(req) {
    const clone = req.clone();
    return Response.json({
      url: req.url,
      clone: clone.url,
      copy: new Request(clone).url,
      init: new Request(req.clone(), { headers: { a: "b" } }).url,
      body: await req.text(),
    });
  } };`);
  try {
    const conn = await Deno.connect({ transport: "unix", path: r.socket });
    const head = "POST /fn/sub?q=1 HTTP/1.1\r\nhost: inner.test\r\nconnection: close\r\n" +
      "x-forwarded-proto: https\r\nx-forwarded-host: api.example.com:8443\r\n" +
      "content-length: 5\r\n\r\nhello";
    await conn.write(new TextEncoder().encode(head));
    const raw = new TextDecoder().decode(
      new Uint8Array(await new Response(conn.readable).arrayBuffer()),
    );
    const [top, ...rest] = raw.split("\r\n\r\n");
    assert(top.includes(" 200 "), top);
    let body = rest.join("\r\n\r\n");
    if (/transfer-encoding: chunked/i.test(top)) body = body.split("\r\n")[1] ?? "";
    const v = JSON.parse(body);
    const want = "https://api.example.com:8443/fn/sub?q=1";
    for (const k of ["url", "clone", "copy", "init"]) {
      assert(v[k] === want, `${k}: ${v[k]}`);
    }
    assert(v.body === "hello", `body ${v.body}`);
  } finally {
    await stop(r);
  }
});

Deno.test("Deno.serve(handler) is captured instead of opening a port", async () => {
  const r = await start(`Deno.serve({ port: 9 }, () => new Response("captured"));`);
  try {
    const res = await request(r.socket, "/fn");
    assert(res.status === 200 && res.body === "captured", `${res.status} ${res.body}`);
  } finally {
    await stop(r);
  }
});

Deno.test("an exception becomes a 500 JSON error and an error log line", async () => {
  const r = await start(`export default { fetch() { throw new Error("nope"); } };`);
  try {
    const res = await request(r.socket, "/fn", { "x-ferrobase-invocation-id": "inv-2" });
    assert(res.status === 500, `status ${res.status}`);
    assert(res.head.includes("x-ferrobase-error: uncaught"), res.head);
    assert(JSON.parse(res.body).message === "nope", res.body);
    const log = r.lines.map((l) => JSON.parse(l)).find((l) => l.i === "inv-2" && l.l === "error");
    assert(log && String(log.m).includes("nope"), JSON.stringify(r.lines));
    // The process still serves.
    const again = await request(r.socket, "/fn");
    assert(again.status === 500, "still alive");
  } finally {
    await stop(r);
  }
});

Deno.test("sync, async and failing handlers: answers, errors and logs keep their invocation", async () => {
  // The warm path answers a sync Response as is and awaits anything else;
  // logs made after an await or after the response still carry their id,
  // and a URL read late (or never) is still the client's.
  const r = await start(`export default { fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/fn/sync") return new Response("sync");
    if (path === "/fn/sync-throw") throw new Error("sync nope");
    if (path === "/fn/not-a-response") return "text";
    if (path === "/fn/async-not-a-response") return Promise.resolve(42);
    if (path === "/fn/async-throw") return Promise.reject(new Error("async nope"));
    return (async () => {
      await new Promise((done) => setTimeout(done, 5));
      console.log("after await");
      setTimeout(() => console.log("after the response"), 20);
      return new Response(req.url);
    })();
  } };`);
  const url = `export default { fetch(req) {
    console.log("never read my url");
    return new Response("no url");
  } };`;
  const r2 = await start(url);
  try {
    const id = (i: string) => ({ "x-ferrobase-invocation-id": i });
    const sync = await request(r.socket, "/fn/sync", id("s1"));
    assert(sync.status === 200 && sync.body === "sync", `${sync.status} ${sync.body}`);
    for (const [path, message] of [
      ["/fn/sync-throw", "sync nope"],
      ["/fn/not-a-response", "the handler did not return a Response"],
      ["/fn/async-not-a-response", "the handler did not return a Response"],
      ["/fn/async-throw", "async nope"],
    ]) {
      const res = await request(r.socket, path, id(path));
      assert(res.status === 500, `${path}: status ${res.status}`);
      assert(res.head.includes("x-ferrobase-error: uncaught"), `${path}: ${res.head}`);
      assert(JSON.parse(res.body).message === message, `${path}: ${res.body}`);
    }
    const slow = await request(r.socket, "/fn/slow?x=1", {
      ...id("a1"),
      "x-forwarded-proto": "https",
      "x-forwarded-host": "api.example.com",
    });
    assert(slow.body === "https://api.example.com/fn/slow?x=1", slow.body);
    const late = await request(r2.socket, "/fn/late", {
      ...id("n1"),
      "x-forwarded-proto": "https",
      "x-forwarded-host": "api.example.com",
    });
    assert(late.body === "no url", late.body);
    await new Promise((done) => setTimeout(done, 200));
    const lines = [...r.lines, ...r2.lines].filter((l) => l.startsWith("{\"i\"")).map((l) => JSON.parse(l));
    const tagged = (i: string, m: string) => lines.some((l) => l.i === i && String(l.m).includes(m));
    for (const [path, message] of [["/fn/sync-throw", "sync nope"], ["/fn/async-throw", "async nope"]]) {
      assert(tagged(path, message), `error log of ${path}: ${JSON.stringify(lines)}`);
    }
    assert(tagged("a1", "after await"), `after an await: ${JSON.stringify(lines)}`);
    assert(tagged("a1", "after the response"), `after the response: ${JSON.stringify(lines)}`);
    assert(tagged("n1", "never read my url"), `no url read: ${JSON.stringify(lines)}`);
  } finally {
    await stop(r);
    await stop(r2);
  }
});

Deno.test("a module without a handler exits with a reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fb-host-test-" });
  await Deno.writeTextFile(`${dir}/index.ts`, "export const nothing = 1;");
  const child = new Deno.Command(DENO, {
    args: ["run", "--no-prompt", "--no-config", `--allow-read=${dir}`, HOST, `${dir}/s.sock`, `file://${dir}/index.ts`],
    env: { NO_COLOR: "1" },
    clearEnv: true,
    // Held open as the server does: a closed stdin would end it first.
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const out = await child.output();
  try { await child.stdin.close(); } catch { /* already closed */ }
  assert(out.code === 3, `exit code ${out.code}`);
  const text = new TextDecoder().decode(out.stdout);
  assert(text.includes("neither calls Deno.serve"), text);
});

Deno.test("the examples load", async () => {
  for (const name of ["hello.ts", "my-notes.ts", "countdown.ts"]) {
    const code = await Deno.readTextFile(new URL(`./examples/${name}`, import.meta.url));
    const r = await start(code, "FERROBASE_URL,FERROBASE_ANON_KEY");
    try {
      const res = await request(r.socket, "/fn");
      assert(res.status > 0 && res.status < 500, `${name}: ${res.status} ${res.body}`);
    } finally {
      await stop(r);
    }
  }
});
