// End-to-end test of the dashboard in headless Chromium (Debian's
// `chromium`, driven by playwright-core), against a real Ferrobase started by
// the Rust test `dashboard::end_to_end_in_chromium`, which passes:
//
//   FERROBASE_URL            root URL of the server
//   FERROBASE_ADMIN_EMAIL    platform admin
//   FERROBASE_ADMIN_PASSWORD
//   FERROBASE_E2E_OUT        folder for screenshots (one per page)
//   CHROMIUM                 browser binary (default /usr/bin/chromium)
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
  const result = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa"]).analyze();
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) {
    console.error(`axe ${name}: ${v.id} (${v.impact}): ${v.help}\n  ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("\n  ")}`);
  }
  check(bad.length === 0, `${name}: no serious accessibility violations (found ${bad.map((v) => v.id).join(", ")})`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
}

let exitCode = 0;
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
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
  const serviceKey = (await page.getByTestId("secret-service_role key").textContent({ timeout: 60_000 }))?.trim() ?? "";
  check(serviceKey.split(".").length === 3, "the new project's service_role key is shown once");
  const anonKey = (await page.getByTestId("secret-anon key").textContent())?.trim() ?? "";
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
  await page.getByRole("table", { name: "Users" }).getByText("ada@example.com").waitFor();
  await axe(page, "auth-users");
  await shot(page, "auth-users");

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
  await axe(page, "storage");
  await shot(page, "storage");

  // --- settings ---------------------------------------------------------------------
  log("settings");
  await page.getByRole("link", { name: "Settings", exact: true }).click();
  await page.getByText("Settings of e2e-app").waitFor();
  await axe(page, "settings");
  await shot(page, "settings");

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
