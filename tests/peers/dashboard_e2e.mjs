// End-to-end test of the dashboard in headless Chromium (Debian's
// `chromium`, driven by playwright-core), against a real Ferrobase started by
// the Rust test `dashboard::end_to_end_in_chromium`, which passes:
//
//   FERROBASE_URL            root URL of the server
//   FERROBASE_ADMIN_EMAIL    platform admin
//   FERROBASE_ADMIN_PASSWORD
//   FERROBASE_E2E_OUT        folder for screenshots (one per page)
//   CHROMIUM                 browser binary (default /usr/bin/chromium)
//   FERROBASE_E2E_DENO       "1" when the server runs functions (deploy/invoke steps)
//
// Each step checks what a person would see; any failed check, page error or
// serious accessibility violation (axe-core) exits non-zero.
import { chromium } from "playwright-core";
import { AxeBuilder } from "@axe-core/playwright";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const url = process.env.FERROBASE_URL;
const email = process.env.FERROBASE_ADMIN_EMAIL;
const password = process.env.FERROBASE_ADMIN_PASSWORD;
const out = process.env.FERROBASE_E2E_OUT ?? "e2e-out";
if (!url || !email || !password) {
  console.error("FERROBASE_URL, FERROBASE_ADMIN_EMAIL and FERROBASE_ADMIN_PASSWORD are required");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const failures = [];
const pageErrors = [];
const t0 = Date.now();
function log(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}
function check(cond, what) {
  if (!cond) {
    failures.push(what);
    console.error(`FAIL: ${what}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});

/** axe-core on the current page: serious or critical violations fail the run. */
async function axe(page, name) {
  // A popover or modal still fading in or out has its colours blended with
  // the page behind (the referenced-row popover below, checked mid-fade, once
  // failed colour-contrast): let finite transitions settle first (spinners loop
  // forever and are ignored; a page that never settles is checked anyway).
  await page
    .waitForFunction(
      () =>
        document
          .getAnimations()
          .every((a) => a.playState !== "running" || a.effect?.getComputedTiming().iterations === Infinity),
      undefined,
      { timeout: 3000 },
    )
    .catch(() => {});
  const result = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa"]).analyze();
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) {
    console.error(`axe ${name}: ${v.id} (${v.impact}): ${v.help}\n  ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("\n  ")}`);
  }
  check(bad.length === 0, `${name}: no serious accessibility violations (found ${bad.map((v) => v.id).join(", ")})`);
}

/** Polls `f` (async, truthy when done) every 200 ms for up to `ms`. */
async function until(f, ms = 5000) {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
    if (await f()) return true;
  }
  return false;
}

async function shot(page, name) {
  await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
}

// A step that hangs still reports (the Rust test kills a run that overstays).
const watchdog = setTimeout(async () => {
  console.error("FAIL: the run took over 4 minutes");
  await page?.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
  process.exit(1);
}, 240_000);
watchdog.unref();

let exitCode = 0;
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    // The fake clock's init script is refused by the sandboxed (script-less) mail preview, as it should be.
    const benign = /Failed to load resource|Blocked script execution in 'about:srcdoc'/;
    if (m.type() === "error" && !benign.test(m.text())) pageErrors.push(m.text());
  });
  // Every URL the page asks for (HTTP and WebSocket): no key or token may be in one.
  const urls = [];
  page.on("request", (r) => urls.push(r.url()));
  page.on("websocket", (ws) => urls.push(ws.url()));
  // Fake clock: lets the test jump past the session's expiry.
  await page.clock.install();

  // --- sign in ---------------------------------------------------------------
  log("sign-in page");
  const first = await page.goto(`${url}/dashboard/`);
  check(first?.status() === 200, "GET /dashboard/ is 200");
  check((first?.headers()["content-security-policy"] ?? "").includes("script-src 'self'"), "dashboard has a CSP");
  await page.getByRole("heading", { name: "Sign in to Ferrobase" }).waitFor();
  await axe(page, "sign-in");
  await shot(page, "sign-in");
  await page.getByLabel("Email").fill(email);
  await page.getByRole("textbox", { name: "Password" }).fill("wrong-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Sign-in failed").waitFor();
  await page.getByRole("textbox", { name: "Password" }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
  check(
    await page.evaluate(() => localStorage.length === 0 && sessionStorage.length === 0 && !document.cookie),
    "the admin token is in no storage a script could read",
  );

  // --- projects --------------------------------------------------------------
  log("projects");
  // The test server starts with no project.
  await page.getByText("No projects yet.").waitFor();
  await axe(page, "projects");
  await shot(page, "projects");
  await page.getByRole("button", { name: "New project" }).click();
  await page.getByLabel("Ref").fill("e2e-app");
  await page.getByRole("button", { name: "Create project" }).click();
  // `let`: the settings step rotates the keys.
  let serviceKey = (await page.getByTestId("secret-service_role key").textContent({ timeout: 60_000 }))?.trim() ?? "";
  check(serviceKey.split(".").length === 3, "the new project's service_role key is shown once");
  let anonKey = (await page.getByTestId("secret-anon key").textContent())?.trim() ?? "";
  await shot(page, "project-created");
  await page.getByRole("button", { name: "Done" }).click();
  await page.getByRole("link", { name: "e2e-app" }).click();

  // --- SQL editor --------------------------------------------------------------
  log("sql editor");
  await page.getByRole("link", { name: "SQL editor" }).click();
  const query = page.getByLabel("Query");
  await query.fill(
    "create table authors (id bigint generated always as identity primary key, name text not null);\n" +
      "insert into authors (name) values ('Ada'), ('Grace');\n" +
      "create table todos (id bigint generated always as identity primary key, title text not null, done boolean not null default false, meta jsonb, tags text[], author_id bigint references authors(id));\n" +
      "insert into todos (title, meta, tags, author_id) select 'task ' || g, jsonb_build_object('n', g), array['a', 'b'], 1 + g % 2 from generate_series(1, 120) g;",
  );
  await page.getByRole("button", { name: "Run" }).click();
  await page.getByText("INSERT", { exact: true }).last().waitFor();
  await query.fill("select count(*) as n from todos");
  await page.getByRole("button", { name: "Run" }).click();
  const result = page.getByRole("table", { name: "Result 1" });
  await result.waitFor();
  check((await result.locator("tbody td").first().textContent()) === "120", "SQL result shows count 120");
  await query.fill("select * from todos where nope = 1");
  await page.getByRole("button", { name: "Run" }).click();
  await page.getByText("Query failed").waitFor();
  check(await page.locator("mark").count() === 1, "a failing query marks the error position");
  await axe(page, "sql");
  await shot(page, "sql");

  // --- table editor ---------------------------------------------------------------
  log("table editor");
  await page.getByRole("link", { name: "Table editor" }).click();
  await page.getByRole("navigation", { name: "Tables" }).getByText("todos", { exact: true }).click();
  const grid = page.getByRole("table", { name: "Rows of todos" });
  await grid.locator("tbody tr").first().waitFor();
  check((await grid.locator("tbody tr").count()) === 50, "the grid loads one page of 50 rows, not the table");
  check(((await page.getByTestId("row-count").textContent()) ?? "").includes("120"), "the grid shows the total");
  // Sorted by the primary key; one click on the header sorts descending.
  await grid.getByRole("button", { name: "id: 1", exact: true }).waitFor();
  await page.getByRole("button", { name: "Sort by id" }).click();
  await grid.getByRole("button", { name: "id: 120", exact: true }).waitFor();
  // Filter.
  await page.getByRole("combobox", { name: "Column" }).click();
  await page.getByRole("option", { name: "title", exact: true }).click();
  await page.getByLabel("Value", { exact: true }).fill("task 7");
  await page.getByRole("button", { name: "Add filter" }).click();
  await grid.getByRole("button", { name: "title: task 7", exact: true }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('table[aria-label="Rows of todos"] tbody tr').length === 1);
  // Inline edit.
  await grid.getByRole("button", { name: "title: task 7", exact: true }).dblclick();
  const editor = page.getByLabel("Edit title");
  await editor.fill("task 7 edited");
  await editor.press("Enter");
  await grid.getByRole("button", { name: "title: task 7 edited", exact: true }).waitFor();
  const rows = await fetch(`${url}/p/e2e-app/rest/v1/todos?id=eq.7&select=title`, {
    headers: { apikey: serviceKey, authorization: `Bearer ${serviceKey}` },
  }).then((r) => r.json());
  check(rows[0]?.title === "task 7 edited", `the edit reached the database (got ${JSON.stringify(rows)})`);
  // Foreign-key lookup.
  await page.getByRole("button", { name: "Show the referenced authors row" }).click();
  // task 7 belongs to author 1 + 7 % 2 = 2.
  await page.getByText("Grace").waitFor();
  await page.keyboard.press("Escape");
  await axe(page, "table-editor");
  await shot(page, "table-editor");

  // --- schema ---------------------------------------------------------------------
  log("schema");
  await page.getByRole("link", { name: "Schema", exact: true }).click();
  await page.getByRole("navigation", { name: "Schema tables" }).getByText("todos", { exact: true }).click();
  const anonRows = () =>
    fetch(`${url}/p/e2e-app/rest/v1/todos?select=id&limit=1`, { headers: { apikey: anonKey } }).then((r) => r.json());
  await page.getByRole("switch", { name: "Row level security" }).click();
  await page.getByText("RLS is on and there are no policies").waitFor();
  const hidden = await anonRows();
  check(Array.isArray(hidden) && hidden.length === 0, `with RLS on and no policy anon reads nothing (got ${JSON.stringify(hidden)})`);
  await page.getByRole("tab", { name: "Policies" }).click();
  await page.getByRole("button", { name: "New policy" }).click();
  await page.getByRole("button", { name: "Public read" }).click();
  await page.getByRole("button", { name: "Create policy" }).click();
  await page.getByText("to anon, authenticated").waitFor();
  const anonRead = await anonRows();
  check(Array.isArray(anonRead) && anonRead.length === 1, `the "public read" policy lets anon read (got ${JSON.stringify(anonRead)})`);
  await axe(page, "schema");
  await shot(page, "schema");

  // --- auth users -------------------------------------------------------------------
  log("auth users");
  await page.getByRole("link", { name: "Auth users", exact: true }).click();
  await page.getByRole("button", { name: "Create user" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByRole("textbox", { name: "Email" }).fill("ada@example.com");
  await dialog.getByRole("textbox", { name: "Password" }).fill("correct-horse-battery-staple");
  await dialog.getByRole("button", { name: "Create user" }).click();
  const usersTable = page.getByRole("table", { name: "Users" });
  await usersTable.getByText("ada@example.com").waitFor();
  // Server-side search: more users than the page shows, matched by prefix in any case.
  for (const e of ["adam@example.com", "bob@example.com", "madison@example.com"]) {
    const r = await fetch(`${url}/p/e2e-app/auth/v1/admin/users`, {
      method: "POST",
      headers: { apikey: serviceKey, authorization: `Bearer ${serviceKey}`, "content-type": "application/json" },
      body: JSON.stringify({ email: e }),
    });
    check(r.ok, `user ${e} created (${r.status})`);
  }
  await page.getByRole("textbox", { name: "Search users" }).fill("AD");
  await page.getByTestId("user-count").getByText("2 user(s) matching").waitFor();
  const listed = (await usersTable.locator("tbody tr td:first-child p:first-child").allTextContents()).sort();
  check(JSON.stringify(listed) === JSON.stringify(["ada@example.com", "adam@example.com"]), `the search keeps ada and adam, not madison (got ${listed})`);
  check(urls.some((u) => u.includes("/auth/v1/admin/users?") && u.includes("search=AD")), "the search runs on the server");
  await page.getByRole("textbox", { name: "Search users" }).fill("nobody-here");
  await page.getByText('No user matches "nobody-here".').waitFor();
  await page.getByRole("textbox", { name: "Search users" }).fill("ad");
  await usersTable.getByText("adam@example.com").waitFor();
  await axe(page, "auth-users");
  await shot(page, "auth-users");

  // --- auth settings ----------------------------------------------------------------
  log("auth settings");
  await page.getByRole("link", { name: "Auth settings", exact: true }).click();
  await page.getByRole("button", { name: "Save auth settings" }).waitFor();
  await axe(page, "auth-settings");
  await page.getByRole("tab", { name: "Email templates" }).click();
  await page.getByRole("textbox", { name: "Subject" }).fill("Welcome to e2e-app");
  await page.getByRole("button", { name: "Save template" }).click();
  await page.getByText("Template saved").waitFor();
  const tpl = await fetch(`${url}/p/e2e-app/auth/v1/admin/templates/confirmation`, {
    headers: { apikey: serviceKey, authorization: `Bearer ${serviceKey}` },
  }).then((r) => r.json());
  check(tpl.subject === "Welcome to e2e-app", `the template reached the server (got ${JSON.stringify(tpl)})`);
  // No axe here: its script cannot enter the preview's sandboxed (script-less) iframe.
  await shot(page, "auth-settings");

  // --- storage ----------------------------------------------------------------------
  log("storage");
  await page.getByRole("link", { name: "Storage", exact: true }).click();
  await page.getByRole("button", { name: "New bucket" }).click();
  await page.getByRole("dialog").getByLabel("Name").fill("avatars");
  await page.getByRole("button", { name: "Create bucket" }).click();
  await page.getByRole("heading", { name: "avatars" }).waitFor();
  await page.locator('input[type="file"]').setInputFiles({
    name: "hello.txt",
    mimeType: "text/plain",
    buffer: Buffer.from("hello from the dashboard"),
  });
  await page.getByRole("table", { name: "Objects in avatars" }).getByText("hello.txt").waitFor();
  const stored = await fetch(`${url}/p/e2e-app/storage/v1/object/authenticated/avatars/hello.txt`, {
    headers: { apikey: serviceKey, authorization: `Bearer ${serviceKey}` },
  }).then((r) => r.text());
  check(stored === "hello from the dashboard", `the upload reached storage (got ${stored.slice(0, 80)})`);
  // A file over 6 MiB goes over TUS in two chunks (tus-js-client), with the progress bar.
  const big = Buffer.alloc(6.5 * 1024 * 1024, 7);
  big.write("resumable start");
  await page.locator('input[type="file"]').setInputFiles({ name: "big.bin", mimeType: "application/octet-stream", buffer: big });
  await page.getByRole("table", { name: "Objects in avatars" }).getByText("big.bin").waitFor({ timeout: 60_000 });
  const bigBack = Buffer.from(
    await fetch(`${url}/p/e2e-app/storage/v1/object/authenticated/avatars/big.bin`, {
      headers: { apikey: serviceKey, authorization: `Bearer ${serviceKey}` },
    }).then((r) => r.arrayBuffer()),
  );
  check(bigBack.equals(big), `the resumable upload stored every byte (got ${bigBack.length} of ${big.length})`);
  await axe(page, "storage");
  await shot(page, "storage");

  // Reassigned when the settings step rotates the keys.
  let asService = { apikey: serviceKey, authorization: `Bearer ${serviceKey}` };
  const adminGet = (path) => fetch(`${url}/p/e2e-app${path}`, { headers: asService }).then((r) => r.text());

  // --- realtime ---------------------------------------------------------------------
  log("realtime");
  await page.getByRole("link", { name: "Realtime", exact: true }).click();
  await page.getByRole("button", { name: "New channel" }).click();
  await page.getByRole("dialog").getByRole("textbox", { name: "Pattern" }).fill("room:%");
  await page.getByRole("button", { name: "Create channel" }).click();
  await page.getByRole("table", { name: "Channels" }).getByText("room:%").waitFor();
  check((await adminGet("/admin/v1/realtime/channels")).includes('"pattern":"room:%"'), "the channel reached the server");
  await page.getByRole("combobox", { name: "Table" }).click();
  await page.getByRole("option", { name: "public.todos", exact: true }).click();
  await page.getByRole("button", { name: "Capture changes" }).click();
  await page.getByRole("table", { name: "Captured tables" }).getByText("public.todos").waitFor();
  check((await adminGet("/admin/v1/realtime/changes")).includes('"table":"todos"'), "todos changes are captured");
  // The live inspector: join from the browser over Socket.IO (service role),
  // see presence, a broadcast sent from the page, an HTTP publish and a row change.
  await page.getByRole("button", { name: "Connect", exact: true }).click();
  await page.getByLabel("Connection state").getByText("connected", { exact: true }).waitFor();
  const events = page.getByRole("table", { name: "Inspector events" });
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.getByLabel("Joined channels").getByText("room:lobby · 1 present").waitFor();
  await page.getByLabel("Broadcast payload (JSON)").fill('{"text": "hi from e2e"}');
  await page.getByRole("button", { name: "Send broadcast" }).click();
  await events.getByText('"hi from e2e"', { exact: false }).first().waitFor();
  await page.getByRole("textbox", { name: "Payload (JSON)", exact: true }).fill('{"text": "over http"}');
  await page.getByRole("button", { name: "Publish (service role)" }).click();
  await events.getByText('"over http"', { exact: false }).first().waitFor();
  await page.getByLabel("Inspector channel").fill("db:public:todos");
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.getByLabel("Joined channels").getByText(/^db:public:todos/).waitFor();
  await fetch(`${url}/p/e2e-app/rest/v1/todos?id=eq.2`, {
    method: "PATCH",
    headers: { ...asService, "content-type": "application/json" },
    body: JSON.stringify({ title: "changed live" }),
  });
  await events.getByText("changed live", { exact: false }).first().waitFor();
  check((await events.getByText("change", { exact: true }).count()) >= 1, "the row change is listed as a change event");
  await axe(page, "realtime");
  await shot(page, "realtime");
  await page.getByRole("button", { name: "Disconnect" }).click();

  // --- webhooks ---------------------------------------------------------------------
  log("webhooks");
  await page.getByRole("link", { name: "Webhooks", exact: true }).click();
  await page.getByText("No endpoints yet.").waitFor();
  await page.getByRole("button", { name: "New endpoint" }).click();
  await page.getByRole("dialog").getByRole("textbox", { name: "URL" }).fill("https://hooks.example.invalid/in");
  await page.getByRole("button", { name: "Create endpoint" }).click();
  const secret = (await page.getByTestId("secret-Signing secret").textContent())?.trim() ?? "";
  check(secret.startsWith("whsec_"), `the signing secret is shown once on creation (got ${secret.slice(0, 8)}…)`);
  await shot(page, "webhook-created");
  await page.getByRole("button", { name: "Done" }).click();
  await page.getByRole("heading", { name: "https://hooks.example.invalid/in" }).waitFor();
  check(!(await page.content()).includes(secret), "the secret is gone from the page once dismissed");
  check(!(await adminGet("/admin/v1/webhooks")).includes(secret), "the listing never carries the secret");
  // An event: a row change of the captured table is delivered (and fails: the host does not resolve).
  await fetch(`${url}/p/e2e-app/rest/v1/todos?id=eq.1`, {
    method: "PATCH",
    headers: { ...asService, "content-type": "application/json" },
    body: JSON.stringify({ done: true }),
  });
  const deliveries = page.getByRole("table", { name: "Deliveries" });
  for (let i = 0; i < 30 && (await deliveries.locator("tbody tr").count()) === 0; i++) {
    await page.getByRole("button", { name: "Refresh" }).click();
    await page.waitForTimeout(300);
  }
  check((await deliveries.locator("tbody tr").count()) >= 1, "the delivery log shows the event");
  await deliveries.getByRole("button", { name: /^Details of delivery/ }).first().click();
  await page.getByRole("table", { name: "Attempts" }).waitFor();
  await page.keyboard.press("Escape");
  await page.getByRole("button", { name: "Rotate secret" }).click();
  const rotated = (await page.getByTestId("secret-Signing secret").textContent())?.trim() ?? "";
  check(rotated.startsWith("whsec_") && rotated !== secret, "rotating shows a new secret once");
  await page.getByRole("button", { name: "Done" }).click();
  await axe(page, "webhooks");
  await shot(page, "webhooks");

  // --- edge functions ---------------------------------------------------------------
  log("functions");
  await page.getByRole("link", { name: "Edge functions", exact: true }).click();
  await page.getByRole("heading", { name: "Secrets" }).waitFor();
  await page.getByRole("textbox", { name: "Name" }).fill("GREETING");
  await page.getByLabel("Value").fill("s3cret-greeting-value");
  await page.getByRole("button", { name: "Set secret" }).click();
  await page.getByRole("table", { name: "Secrets" }).getByText("GREETING").waitFor();
  check(!(await page.content()).includes("s3cret-greeting-value"), "a secret's value is never shown");
  check(!(await adminGet("/admin/v1/functions/secrets")).includes("s3cret-greeting-value"), "the secrets listing has names only");
  if (process.env.FERROBASE_E2E_DENO === "1") {
    await page.getByRole("button", { name: "New function" }).click();
    await page.getByRole("dialog").getByRole("textbox", { name: "Slug" }).fill("hello");
    await page.getByRole("button", { name: "Open editor" }).click();
    await page.getByRole("button", { name: "Deploy" }).click();
    await page.getByText("version 1", { exact: true }).first().waitFor({ timeout: 60_000 });
    await page.getByRole("tab", { name: "Invoke" }).click();
    await page.getByRole("button", { name: "Invoke (service role)" }).click();
    const answer = page.getByLabel("Invocation answer");
    await answer.waitFor({ timeout: 60_000 });
    check(((await answer.textContent()) ?? "").includes("Hello Ferrobase!"), "the deployed function answers");
    await page.getByRole("tab", { name: "Versions" }).click();
    await page.getByRole("table", { name: "Versions" }).waitFor();
    // Schedules: create one that ticks every second, see its runs, pause it, delete it.
    await page.getByRole("tab", { name: "Schedules" }).click();
    await page.getByText("No schedules.").waitFor();
    await page.getByRole("button", { name: "New schedule" }).click();
    const sd = page.getByRole("dialog");
    await sd.getByRole("textbox", { name: "Schedule name" }).fill("every-second");
    await sd.getByRole("textbox", { name: "Cron" }).fill("* * * * * *");
    await sd.getByRole("textbox", { name: "Body (JSON)" }).fill('{"name": "cron"}');
    await page.getByRole("button", { name: "Create schedule" }).click();
    await page.getByRole("table", { name: "Schedules" }).getByText("every-second").waitFor();
    check((await adminGet("/admin/v1/functions/hello/schedules")).includes('"name":"every-second"'), "the schedule reached the server");
    await page.getByRole("button", { name: "Runs of schedule every-second" }).click();
    const runs = page.getByRole("table", { name: "Runs of every-second" });
    await runs.waitFor();
    for (let i = 0; i < 40 && (await runs.getByText("200", { exact: true }).count()) === 0; i++) {
      await page.waitForTimeout(500);
      await page.getByRole("button", { name: "Refresh runs" }).click();
    }
    check((await runs.getByText("200", { exact: true }).count()) >= 1, "a scheduled run is listed with its status");
    // The switch's input sits under its drawn track: click the input itself.
    await page.getByRole("switch", { name: "Enable schedule every-second" }).dispatchEvent("click");
    await page.getByRole("table", { name: "Schedules" }).getByText("paused").waitFor();
    check((await adminGet("/admin/v1/functions/hello/schedules")).includes('"enabled":false'), "pausing reached the server");
    await axe(page, "functions-schedules");
    await shot(page, "functions-schedules");
    await page.getByRole("button", { name: "Delete schedule every-second" }).click();
    await page.getByRole("dialog").getByRole("textbox").fill("every-second");
    await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
    await page.getByText("No schedules.").waitFor();
  } else {
    log("functions: no deno, deploy skipped");
  }
  await axe(page, "functions");
  await shot(page, "functions");

  // --- AI ---------------------------------------------------------------------------
  log("ai");
  await page.getByRole("link", { name: "AI", exact: true }).click();
  await page.getByRole("button", { name: "New provider" }).click();
  const pd = page.getByRole("dialog");
  await pd.getByRole("textbox", { name: "Name" }).fill("openrouter");
  await pd.getByRole("textbox", { name: "Base URL" }).fill("https://llm.example.invalid/v1");
  await pd.getByLabel("API key").fill("sk-e2e-0123456789abcdef");
  await page.getByRole("button", { name: "Add provider" }).click();
  const providers = page.getByRole("table", { name: "Providers" });
  await providers.getByText("openrouter").waitFor();
  check((await providers.getByText("stored").count()) === 1, "the provider says a key is stored");
  check(!(await page.content()).includes("sk-e2e-0123456789abcdef"), "the provider key is write-only in the page");
  check(!(await adminGet("/admin/v1/ai/providers")).includes("sk-e2e-0123456789abcdef"), "the provider listing never carries the key");
  await page.getByText("No AI calls in this period.").waitFor();
  await axe(page, "ai");
  await shot(page, "ai");

  // --- settings ---------------------------------------------------------------------
  log("settings");
  await page.getByRole("link", { name: "Settings", exact: true }).click();
  await page.getByText("Settings of e2e-app").waitFor();
  await axe(page, "settings");
  // CORS: the project's own list, enforced by the server.
  const corsOf = async (origin) => {
    const r = await fetch(`${url}/p/e2e-app/rest/v1/todos`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "GET", "access-control-request-headers": "apikey" },
    });
    return r.headers.get("access-control-allow-origin");
  };
  check((await corsOf("https://elsewhere.example")) !== null, "before: the server-wide CORS list (*) applies");
  // The switch's input sits under its drawn track: click the input itself.
  await page.getByRole("switch", { name: "Use this project's own allowed origins" }).dispatchEvent("click");
  const originsInput = page.getByRole("combobox", { name: "Allowed origins" });
  await originsInput.fill("https://app.example.com");
  await originsInput.press("Enter");
  await page.getByRole("button", { name: "Save CORS origins" }).click();
  await page.getByText("CORS origins saved").waitFor();
  check((await corsOf("https://app.example.com")) === "https://app.example.com", "an allowed origin gets the CORS header");
  check((await corsOf("https://elsewhere.example")) === null, "another origin is refused");
  // Storage quota: 7 MiB, with about 6.5 MiB stored, leaves no room for 1 MiB more.
  const uploadMib = (name) =>
    fetch(`${url}/p/e2e-app/storage/v1/object/avatars/${name}`, {
      method: "POST",
      headers: { apikey: serviceKey, authorization: `Bearer ${serviceKey}`, "content-type": "application/octet-stream" },
      body: Buffer.alloc(1024 * 1024, 1),
    });
  await page.getByRole("switch", { name: "Use this project's own storage quota" }).dispatchEvent("click");
  await page.getByRole("textbox", { name: "Storage quota (MiB)" }).fill("7");
  await page.getByRole("button", { name: "Save storage quota" }).click();
  await page.getByText("Storage quota saved").waitFor();
  const over = await uploadMib("over.bin");
  const overBody = await over.json();
  check(over.status === 413 && overBody.code === "QuotaExceeded", `an upload past the quota is refused (got ${over.status} ${JSON.stringify(overBody)})`);
  // The storage page shows the usage against it.
  await page.getByRole("link", { name: "Storage", exact: true }).click();
  const usageText = page.getByTestId("storage-usage");
  await usageText.waitFor();
  const usageLine = (await usageText.textContent()) ?? "";
  check(/^6\.\d MiB of 7\.0 MiB used$/.test(usageLine), `the storage page shows the usage (got ${usageLine})`);
  await page.getByRole("link", { name: "Settings", exact: true }).click();
  await page.getByText("Settings of e2e-app").waitFor();
  await page.getByRole("switch", { name: "Use this project's own storage quota" }).dispatchEvent("click");
  await page.getByRole("button", { name: "Save storage quota" }).click();
  await page.getByText("Storage quota back to the server default").waitFor();
  check((await uploadMib("fits.bin")).status === 200, "back on the server default, the upload fits");
  await shot(page, "settings");
  // Key rotation: typed confirmation, new keys shown once, old keys refused.
  const oldService = serviceKey;
  await page.getByRole("button", { name: "Rotate keys" }).click();
  const confirmRotate = page.getByRole("dialog", { name: "Rotate the keys of e2e-app" });
  check(await confirmRotate.getByRole("button", { name: "Rotate keys" }).isDisabled(), "rotation waits for the typed confirmation");
  await confirmRotate.getByRole("textbox").fill("e2e-app");
  await confirmRotate.getByRole("button", { name: "Rotate keys" }).click();
  const newService = (await page.getByTestId("secret-New service_role key").textContent())?.trim() ?? "";
  const newAnon = (await page.getByTestId("secret-New anon key").textContent())?.trim() ?? "";
  check(newService.split(".").length === 3 && newService !== oldService, "a new service_role key is shown");
  await page.getByRole("button", { name: "Copy New anon key" }).waitFor();
  await axe(page, "settings-rotated");
  await shot(page, "settings-rotated");
  await page.getByRole("button", { name: "Done" }).click();
  check(!(await page.content()).includes(newService), "the new keys leave the page once dismissed");
  const withOld = await fetch(`${url}/p/e2e-app/rest/v1/todos?select=id&limit=1`, { headers: { apikey: oldService, authorization: `Bearer ${oldService}` } });
  check(withOld.status === 401, `the old service_role key is refused (got ${withOld.status})`);
  serviceKey = newService;
  anonKey = newAnon;
  asService = { apikey: serviceKey, authorization: `Bearer ${serviceKey}` };
  const withNew = await fetch(`${url}/p/e2e-app/rest/v1/todos?select=id&limit=1`, { headers: asService });
  check(withNew.status === 200, `the new service_role key works (got ${withNew.status})`);
  // The dashboard itself moved to the new key: the table editor still loads.
  await page.getByRole("link", { name: "Table editor" }).click();
  await page.getByRole("navigation", { name: "Tables" }).getByText("todos", { exact: true }).click();
  await page.getByRole("table", { name: "Rows of todos" }).locator("tbody tr").first().waitFor();

  // --- logs -------------------------------------------------------------------------
  log("logs");
  // A 404 with a key in its query string: listed, without the query string.
  await fetch(`${url}/p/e2e-app/rest/v1/no_such_table?apikey=${serviceKey}`, { headers: asService });
  await page.getByRole("link", { name: "Logs", exact: true }).click();
  await page.getByRole("heading", { name: "Logs" }).waitFor();
  const reqs = page.getByRole("table", { name: "Recent requests" });
  check((await page.getByRole("textbox", { name: "Project" }).inputValue()) === "e2e-app", "opened from a project, the logs filter on it");
  await page.getByRole("textbox", { name: "Path contains" }).fill("/rest/v1/todos");
  await reqs.getByText("/p/e2e-app/rest/v1/todos").first().waitFor();
  await page.getByRole("textbox", { name: "Path contains" }).fill("");
  await page.getByRole("combobox", { name: "Status" }).click();
  await page.getByRole("option", { name: "4xx", exact: true }).click();
  const statuses = () => reqs.locator("tbody tr td:nth-child(4)").allTextContents();
  check(
    await until(async () => {
      const got = await statuses();
      return got.length > 0 && got.every((x) => x.startsWith("4"));
    }),
    `the status filter keeps 4xx only (got ${(await statuses()).slice(0, 5).join(",")})`,
  );
  await reqs.getByText("/p/e2e-app/rest/v1/no_such_table").first().waitFor();
  check(!(await page.content()).includes(serviceKey), "the request log shows no key");
  await axe(page, "logs");
  await shot(page, "logs");
  await page.getByRole("tab", { name: "Audit log" }).click();
  const audit = page.getByRole("table", { name: "Audit log" });
  await audit.getByText("project.create").first().waitFor();
  await audit.getByText("sql.execute").first().waitFor();
  await page.getByRole("textbox", { name: "Action starts with" }).fill("function.");
  const actions = () => audit.locator("tbody tr td:nth-child(3)").allTextContents();
  check(
    await until(async () => (await actions()).every((a) => a.startsWith("function."))),
    `the action filter applies (got ${(await actions()).slice(0, 5).join(",")})`,
  );
  await axe(page, "audit-log");
  await shot(page, "audit-log");
  check(!urls.some((u) => u.includes(serviceKey) || /[?&](access_)?token=|apikey=/.test(u)), "no key or token was ever put in a URL");
  await page.goBack();

  // --- session expiry ---------------------------------------------------------------
  log("session expiry");
  await page.clock.fastForward("02:00:00");
  await page.getByText("Session expired").waitFor();
  await shot(page, "session-expired");

  // --- sign out ---------------------------------------------------------------------
  await page.getByLabel("Email").fill(email);
  await page.getByRole("textbox", { name: "Password" }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to Ferrobase" }).waitFor();

  // A narrow window still works (navigation behind the burger).
  await page.setViewportSize({ width: 420, height: 800 });
  await page.getByLabel("Email").fill(email);
  await page.getByRole("textbox", { name: "Password" }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  // Signing in again keeps the address: back on the table editor.
  await page.getByRole("button", { name: "Navigation" }).click();
  await page.getByRole("link", { name: "SQL editor" }).click();
  await page.getByLabel("Query").waitFor();
  await shot(page, "narrow");
} catch (e) {
  failures.push(String(e?.stack ?? e));
  console.error(e);
  await page?.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}

for (const e of pageErrors) failures.push(`page error: ${e}`);
log(`${failures.length ? "FAILED" : "passed"}`);
if (failures.length) {
  console.error(failures.join("\n"));
  exitCode = 1;
}
process.exit(exitCode);
