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
//   A function can write to stdout itself, so these tags are a convenience
//   within its own logs, not a boundary.
// - each request carries `x-ferrobase-invocation-id`; an exception thrown by
//   the handler becomes a 500 JSON `{code: "function_error", message}` with
//   the header `x-ferrobase-error: uncaught`, and is logged as an error.
// - a request with `x-ferrobase-probe` and no invocation id is the server's
//   liveness probe: a 204 from the host itself (a function stuck in a loop
//   blocks the event loop, so the probe gets no answer).
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
  if (text.length <= MAX_MESSAGE) return text;
  // The same marker as the server's for output lines it cuts.
  return `${text.slice(0, MAX_MESSAGE)}… [truncated ${text.length - MAX_MESSAGE} characters]`;
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
// answers. Instead, the `url()` of the served requests' inner record (which
// `req.url`, `req.clone()`, `new Request(req)` and `fetch(req)` all read) is
// replaced once, on its prototype: it works the public URL out when first
// asked, from the two headers alone, so a function that never reads its URL
// pays nothing for it and none pays for reading all its headers. Found by
// feature detection and checked on the first request; a Deno without that
// record takes the copy.
const unixScheme = "http+unix://";
/** Where a served request keeps its public URL once worked out. */
const publicUrlKey = Symbol("ferrobase public url");
/** The inner record's key on a `Request`; `null`: copy every request. */
let innerKey: symbol | null | undefined;
/** One header of an inner record, as the socket gave it. */
let innerHeader: (inner: unknown, name: string) => string | null | undefined;

function publicUrl(unixUrl: string, header: (name: string) => string | null | undefined): string {
  const proto = header("x-forwarded-proto") ?? "http";
  const host = header("x-forwarded-host") ?? header("host") ?? "localhost";
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

/** Replaces the inner records' `url()`; false (and nothing changed) if it does not take. */
function patchInnerUrl(raw: Request): boolean {
  const key = Object.getOwnPropertySymbols(raw).find((s) => s.description === "request");
  // deno-lint-ignore no-explicit-any
  const inner = key ? (raw as any)[key] : undefined;
  const proto = inner ? Object.getPrototypeOf(inner) : undefined;
  if (!key || !proto || typeof proto.url !== "function" || typeof proto.header !== "function") {
    return false;
  }
  const nativeUrl: () => string = proto.url;
  const nativeHeader: (name: string) => string | null | undefined = proto.header;
  // deno-lint-ignore no-explicit-any
  function url(this: any): string {
    let url = this[publicUrlKey];
    if (url === undefined) {
      url = this[publicUrlKey] = publicUrl(
        nativeUrl.call(this),
        (name) => nativeHeader.call(this, name),
      );
    }
    return url;
  }
  try {
    const expected = publicUrl(nativeUrl.call(inner), (name) => nativeHeader.call(inner, name));
    proto.url = url;
    if (proto.url === url && raw.url === expected) {
      innerKey = key;
      innerHeader = (record, name) => nativeHeader.call(record, name);
      return true;
    }
    proto.url = nativeUrl;
  } catch {
    // A record that cannot be changed.
  }
  return false;
}

/** The request as the function sees it, and its invocation id. */
function prepare(raw: Request): [Request, string] {
  if (innerKey === undefined && !patchInnerUrl(raw)) innerKey = null;
  if (innerKey) {
    // deno-lint-ignore no-explicit-any
    const inner = (raw as any)[innerKey];
    return [raw, innerHeader(inner, "x-ferrobase-invocation-id") ?? ""];
  }
  const req = new Request(publicUrl(raw.url, (name) => raw.headers.get(name)), raw);
  return [req, raw.headers.get("x-ferrobase-invocation-id") ?? ""];
}

function failed(e: unknown): Response {
  log("error", ["Uncaught error:", e]);
  return errorResponse(e instanceof Error ? e.message : String(e));
}

function checked(res: unknown): Response {
  return res instanceof Response
    ? res
    : failed(new Error("the handler did not return a Response"));
}

realServe(
  {
    path: socketPath,
    onListen() {
      emit({ ready: true });
    },
    onError: failed,
  },
  // Kept as cheap as `Deno.serve`'s own path: a handler that answers at once
  // is answered at once (no async wrapper, no promise of our own).
  (raw, info) => {
    const [req, id] = prepare(raw);
    // The server's liveness probe (never a caller's: the server drops
    // client-sent `x-ferrobase-*` headers): answered here, without the
    // function, as soon as the event loop turns.
    if (!id && raw.headers.has("x-ferrobase-probe")) return new Response(null, { status: 204 });
    return invocation.run(id, () => {
      let res;
      try {
        res = handler(req, info);
      } catch (e) {
        return failed(e);
      }
      if (res instanceof Response) return res;
      return Promise.resolve(res).then(checked, failed);
    });
  },
);
