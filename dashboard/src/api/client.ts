// The HTTP client of the dashboard: one `request` function for every API
// (platform, admin, data, auth, storage), the admin session, and the error
// type every page shows.
//
// The admin token lives in memory only (this module), never in a URL,
// localStorage or sessionStorage: storage objects are served from the same
// origin, and although the server serves them sandboxed, keeping the token
// out of any storage a document of this origin can read is the safer rule.
// Requests carry it in `Authorization`, so no cookie is involved and a
// cross-site request cannot borrow the session (CSRF-safe by construction).
// The price: reloading the page asks for the password again.

/** Where the server's APIs live: the origin, plus any prefix the dashboard is mounted under. */
export const apiRoot: string = (() => {
  const at = window.location.pathname.indexOf("/dashboard");
  return at > 0 ? window.location.pathname.slice(0, at) : "";
})();

/** An error answered by the server, in any of its envelopes (platform, PostgREST, GoTrue, storage). */
export class ApiError extends Error {
  status: number;
  code: string;
  details?: string;
  hint?: string;
  constructor(status: number, code: string, message: string, details?: string, hint?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.hint = hint;
  }
}

/** The signed-in platform admin. */
export interface Session {
  token: string;
  email: string;
  /** Epoch milliseconds when the token expires. */
  expiresAt: number;
}

type Listener = () => void;
let session: Session | null = null;
let expiredNotice = false;
let timer: ReturnType<typeof setTimeout> | undefined;
const listeners = new Set<Listener>();

function emit() {
  for (const l of listeners) l();
}

export const sessionStore = {
  get: () => session,
  /** True once after a session ended because it expired (the sign-in page says so). */
  wasExpired: () => expiredNotice,
  subscribe(l: Listener) {
    listeners.add(l);
    return () => listeners.delete(l);
  },
  set(s: Session | null, expired = false) {
    session = s;
    expiredNotice = expired;
    if (timer) clearTimeout(timer);
    if (s) {
      // End the session when the token expires, so no page keeps working on a dead token.
      timer = setTimeout(() => sessionStore.set(null, true), Math.max(0, s.expiresAt - Date.now()));
    }
    emit();
  },
};

/** Options of one request. */
export interface RequestOptions {
  method?: string;
  /** JSON-encoded unless it is a string, Blob or FormData. */
  body?: unknown;
  /** Bearer token; defaults to the admin session's. */
  token?: string;
  /** Sent as `apikey` too (project keys). */
  apikey?: string;
  headers?: Record<string, string>;
  /** Return the raw Response instead of parsed JSON. */
  raw?: boolean;
  signal?: AbortSignal;
}

function errorFrom(status: number, body: unknown): ApiError {
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    const message = (b.message ?? b.msg ?? b.error_description ?? b.error ?? `HTTP ${status}`) as string;
    const code = String(b.code ?? b.error_code ?? b.error ?? status);
    return new ApiError(status, code, String(message), b.details as string | undefined, b.hint as string | undefined);
  }
  return new ApiError(status, String(status), typeof body === "string" && body ? body : `HTTP ${status}`);
}

/** Calls `path` (relative to the API root); throws [`ApiError`] on a non-2xx answer. */
export async function request<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  const usingAdmin = opts.token === undefined;
  const token = opts.token ?? session?.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.apikey) headers.apikey = opts.apikey;
  let body: BodyInit | undefined;
  if (opts.body !== undefined) {
    if (typeof opts.body === "string" || opts.body instanceof Blob || opts.body instanceof FormData) {
      body = opts.body as BodyInit;
    } else {
      body = JSON.stringify(opts.body);
      headers["content-type"] ??= "application/json";
    }
  }
  const resp = await fetch(apiRoot + path, {
    method: opts.method ?? "GET",
    headers,
    body,
    signal: opts.signal,
    credentials: "omit",
  });
  if (!resp.ok) {
    const text = await resp.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    const err = errorFrom(resp.status, parsed);
    if (usingAdmin && resp.status === 401 && session) {
      sessionStore.set(null, err.code === "token_expired" || err.code === "invalid_token");
    }
    throw err;
  }
  if (opts.raw) return resp as unknown as T;
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** The message to show for any thrown value. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    return [e.message, e.details, e.hint].filter(Boolean).join(" — ");
  }
  return e instanceof Error ? e.message : String(e);
}
