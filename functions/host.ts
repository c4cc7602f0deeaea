// Ferrobase function host: runs ONE deployed function version in a Deno
// process that the server supervises (server/src/functions/local.rs).
//
//   deno run <restricted permissions> host.ts <unix socket path> <entrypoint file URL>
//
// The server starts it with permissions limited to the function's own files
// (--allow-read of its version directory), its own environment variables
// (--allow-env=NAME,...) and the network hosts the operator allows; no
// --allow-run, --allow-ffi, --allow-sys or writes. The server proxies every
// invocation to the unix socket this script listens on.
//
// Protocol with the server:
// - stdout carries one JSON object per line: `{"ready": true}` once the
//   socket listens, then `{"i": invocation id | null, "l": level, "m": text}`
//   for every console call, tagged with the invocation that made it (through
//   AsyncLocalStorage, so concurrent invocations keep their own logs).
// - each request carries `x-ferrobase-invocation-id`; an exception thrown by
//   the handler becomes a 500 JSON `{code: "function_error", message}` with
//   the header `x-ferrobase-error: uncaught`, and is logged as an error.
//
// A function is either `export default { fetch(req) }` or a module that calls
// `Deno.serve(handler)` (or `Deno.serve(options, handler)`): the call is
// intercepted and the handler kept, so the module never opens a port.

import { AsyncLocalStorage } from "node:async_hooks";

type Handler = (req: Request, info?: unknown) => Response | Promise<Response>;

const [socketPath, entrypoint] = Deno.args;
const invocation = new AsyncLocalStorage<string>();
const encoder = new TextEncoder();
/** Longest log message kept, in characters. */
const MAX_MESSAGE = 16 * 1024;

function emit(line: Record<string, unknown>) {
  const bytes = encoder.encode(JSON.stringify(line) + "\n");
  let written = 0;
  while (written < bytes.length) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

function render(args: unknown[]): string {
  const text = args
    .map((a) => (typeof a === "string" ? a : Deno.inspect(a, { depth: 4 })))
    .join(" ");
  return text.length > MAX_MESSAGE ? text.slice(0, MAX_MESSAGE) + "…" : text;
}

function log(level: string, args: unknown[]) {
  emit({ i: invocation.getStore() || null, l: level, m: render(args) });
}

const levels = ["log", "info", "warn", "error", "debug"] as const;
for (const level of levels) {
  (console as unknown as Record<string, unknown>)[level] = (...args: unknown[]) =>
    log(level, args);
}

// A rejected promise nobody awaited must not kill the process (and every
// other in-flight invocation with it): log it against its invocation.
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  log("error", ["Unhandled rejection:", event.reason]);
});
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  log("error", ["Uncaught error:", event.error ?? event.message]);
});

// The server holds this process's stdin open for as long as it supervises it:
// end-of-file means the server is gone (even killed with SIGKILL, which leaves
// it no chance to clean up), and a host must not outlive it as an orphan.
(async () => {
  try {
    for await (const _ of Deno.stdin.readable) { /* nothing is ever sent */ }
  } catch { /* a closed stdin ends the same way */ }
  Deno.exit(0);
})();

// Reading a variable outside the function's own (--allow-env) ones gives
// `undefined`, as for an unset variable, instead of throwing: the process
// environment holds nothing else anyway (the server clears it).
const realEnvGet = Deno.env.get.bind(Deno.env);
Deno.env.get = (key: string) => {
  try {
    return realEnvGet(key);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) return undefined;
    throw e;
  }
};

// Capture `Deno.serve(...)` calls made by the function module.
let captured: Handler | null = null;
const realServe = Deno.serve;
const fakeServer = {
  finished: new Promise<void>(() => {}),
  addr: { transport: "unix", path: socketPath },
  shutdown: () => Promise.resolve(),
  ref() {},
  unref() {},
  [Symbol.asyncDispose]: () => Promise.resolve(),
};
// deno-lint-ignore no-explicit-any
(Deno as any).serve = (a: any, b?: any) => {
  if (typeof a === "function") captured = a;
  else if (typeof b === "function") captured = b;
  else if (a && typeof a.handler === "function") captured = a.handler;
  else if (a && typeof a.fetch === "function") captured = (req) => a.fetch(req);
  return fakeServer;
};

let handler: Handler;
try {
  const mod = await import(entrypoint);
  const exported = mod.default;
  if (exported && typeof exported.fetch === "function") {
    handler = (req, info) => exported.fetch(req, info);
  } else if (typeof exported === "function") {
    handler = exported;
  } else if (captured) {
    handler = captured;
  } else {
    throw new Error(
      "the module neither calls Deno.serve(handler) nor exports default { fetch }",
    );
  }
} catch (e) {
  emit({ i: null, l: "error", m: "Failed to load the function: " + render([e]) });
  Deno.exit(3);
}

function errorResponse(message: string): Response {
  return new Response(JSON.stringify({ code: "function_error", message }), {
    status: 500,
    headers: { "content-type": "application/json", "x-ferrobase-error": "uncaught" },
  });
}

// The socket gives `http+unix://{host}/…` URLs: the function must see the
// one the client used (`x-forwarded-proto`, `x-forwarded-host`).
// `new Request(url, raw)` would do it but costs more than the rest of the
// invocation together (it re-reads the request as an init dictionary and
// wraps its body in a new stream): under load it halved what one process
// answers. Instead, the request's inner record gets its own `url()`, which
// `req.url`, `req.clone()`, `new Request(req)` and `fetch(req)` all read.
// Found by feature detection; a Deno without that record takes the copy.
const unixScheme = "http+unix://";
let innerKey: symbol | null | undefined;

function publicUrl(raw: Request, unixUrl: string): string {
  const proto = raw.headers.get("x-forwarded-proto") ?? "http";
  const host = raw.headers.get("x-forwarded-host") ?? raw.headers.get("host") ?? "localhost";
  let rest = unixUrl;
  if (rest.startsWith(unixScheme)) {
    const slash = rest.indexOf("/", unixScheme.length);
    rest = slash < 0 ? "/" : rest.slice(slash);
  } else {
    const u = new URL(rest);
    rest = u.pathname + u.search;
  }
  return `${proto}://${host}${rest}`;
}

function withPublicUrl(raw: Request): Request {
  if (innerKey === undefined) {
    innerKey = Object.getOwnPropertySymbols(raw).find((s) => s.description === "request") ??
      null;
  }
  // deno-lint-ignore no-explicit-any
  const inner = innerKey ? (raw as any)[innerKey] : undefined;
  if (inner && typeof inner.url === "function") {
    try {
      const url = publicUrl(raw, inner.url());
      inner.url = () => url;
      if (raw.url === url) return raw;
    } catch {
      // A record that cannot be changed: take the copy from now on.
    }
  }
  innerKey = null;
  return new Request(publicUrl(raw, raw.url), raw);
}

realServe(
  {
    path: socketPath,
    onListen() {
      emit({ ready: true });
    },
    onError(e) {
      log("error", ["Uncaught error:", e]);
      return errorResponse(e instanceof Error ? e.message : String(e));
    },
  },
  (raw, info) => {
    const id = raw.headers.get("x-ferrobase-invocation-id") ?? "";
    const req = withPublicUrl(raw);
    return invocation.run(id, async () => {
      try {
        const res = await handler(req, info);
        if (!(res instanceof Response)) {
          throw new Error("the handler did not return a Response");
        }
        return res;
      } catch (e) {
        log("error", ["Uncaught error:", e]);
        return errorResponse(e instanceof Error ? e.message : String(e));
      }
    });
  },
);
