//! The admin web UI (`/dashboard`): the committed build is fresh, the
//! server serves it (SPA fallback, caching, gzip, CSP), and the pages work
//! end to end in headless Chromium (playwright-core driving Debian's
//! `chromium`, `tests/peers/dashboard_e2e.mjs`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_lc_rs::digest;
use reqwest::StatusCode;
use reqwest::header;

use crate::auth::{missing_peer, node_bin, node_modules_with};
use crate::support::{TestApp, temp_dir};

fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard")
}

/// The files the build is made from, as sorted `/`-separated paths relative
/// to `dashboard/` (the same list as `sourceFiles` in `dashboard/scripts/stamp.mjs`).
fn source_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let rel: Vec<_> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &root.join("src"), &mut out);
    for f in [
        "index.html",
        "package.json",
        "package-lock.json",
        "tsconfig.json",
        "vite.config.ts",
    ] {
        out.push(f.to_owned());
    }
    // JavaScript's default sort compares UTF-16 code units; for the ASCII
    // names used here that is byte order.
    out.sort();
    out
}

/// SHA-256 (hex) of `path\0content\0` for every source file (as `stamp.mjs`).
fn source_hash(root: &Path) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for f in source_files(root) {
        let body = std::fs::read(root.join(&f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
        ctx.update(f.as_bytes());
        ctx.update(b"\0");
        ctx.update(&body);
        ctx.update(b"\0");
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `dashboard/dist` was built from the sources as they are: a change to the
/// dashboard without `cargo xtask dashboard` (and committing `dist`) fails here.
#[test]
fn dist_is_fresh() {
    let root = dashboard_dir();
    let recorded = std::fs::read_to_string(root.join("dist/.source-hash"))
        .expect("dashboard/dist/.source-hash is missing: run `cargo xtask dashboard`");
    assert_eq!(
        recorded.trim(),
        source_hash(&root),
        "dashboard/dist is stale against dashboard/src: run `cargo xtask dashboard` and commit dashboard/dist"
    );
    assert!(root.join("dist/index.html").is_file());
}

/// The compressed JavaScript a first visit of one page loads: the entry
/// script, its static imports, and the page's lazy chunk with its static
/// imports (as gzip served them; files under 1 KiB are served as is).
fn first_load_bytes(assets: &Path, entry: &str, page: &str) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![entry.to_owned(), page.to_owned()];
    let mut total = 0;
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let path = assets.join(&name);
        let code = std::fs::read_to_string(&path).expect("chunk is readable");
        let gz = assets.join(format!("{name}.gz"));
        total += std::fs::metadata(&gz)
            .or_else(|_| std::fs::metadata(&path))
            .map_or(0, |m| m.len() as usize);
        // Static imports only (`import"./x.js"`, `from"./x.js"`); dynamic
        // `import("./x.js")` chunks load later, when their page is opened.
        for marker in ["from\"./", "import\"./"] {
            for part in code.split(marker).skip(1) {
                if let Some(dep) = part.split('"').next().filter(|d| d.ends_with(".js")) {
                    todo.push(dep.to_owned());
                }
            }
        }
    }
    total
}

/// Issue 16's budget: a first load stays under 300 KB of compressed
/// JavaScript, whichever page it opens (routes are split, so each page adds
/// only its own chunk).
#[test]
fn first_load_fits_the_javascript_budget() {
    const BUDGET: usize = 300 * 1000;
    let dist = dashboard_dir().join("dist");
    let index = std::fs::read_to_string(dist.join("index.html")).expect("dist/index.html");
    let entry = index
        .split("src=\"/dashboard/assets/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("index.html has its entry script")
        .to_owned();
    let assets = dist.join("assets");
    let pages: Vec<String> = std::fs::read_dir(&assets)
        .expect("dist/assets")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".js") && n.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    assert!(pages.len() >= 10, "route-split page chunks: {pages:?}");
    let mut worst = (String::new(), 0);
    for page in &pages {
        let bytes = first_load_bytes(&assets, &entry, page);
        if bytes > worst.1 {
            worst = (page.clone(), bytes);
        }
    }
    println!(
        "largest first load: {} with {} bytes gzip",
        worst.0, worst.1
    );
    assert!(
        worst.1 < BUDGET,
        "a first load of {} takes {} bytes of gzip JavaScript (budget {BUDGET})",
        worst.0,
        worst.1
    );
}

/// The built app is served with an SPA fallback, caching headers, gzip and a CSP.
#[tokio::test]
async fn serves_the_app() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |path: &str| http.get(format!("{}{path}", app.url));

    // `/` and `/dashboard` lead to the app.
    for path in ["/", "/dashboard"] {
        let resp = get(path).send().await.expect("get");
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT, "{path}");
        assert_eq!(resp.headers()[header::LOCATION], "/dashboard/");
    }

    let index = get("/dashboard/").send().await.expect("index");
    assert_eq!(index.status(), StatusCode::OK);
    let h = index.headers().clone();
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    let html = index.text().await.expect("body");
    assert!(html.contains("<div id=\"root\">"), "{html}");

    // Deep links answer the app (SPA fallback), with the same ETag.
    let deep = get("/dashboard/projects/default/tables/public/todos")
        .send()
        .await
        .expect("deep");
    assert_eq!(deep.status(), StatusCode::OK);
    assert_eq!(deep.headers()[header::ETAG], h[header::ETAG]);
    let etag = h[header::ETAG].clone();
    let again = get("/dashboard/")
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // Hashed assets are immutable, gzip when accepted, identical when not.
    let script = html
        .split("src=\"/dashboard/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("index.html references its entry script")
        .to_owned();
    assert!(
        script.starts_with("assets/") && script.ends_with(".js"),
        "{script}"
    );
    let plain = get(&format!("/dashboard/{script}"))
        .header(header::ACCEPT_ENCODING, "identity")
        .send()
        .await
        .expect("asset");
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(
        plain.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(
        plain.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/javascript")
    );
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    let plain_body = plain.bytes().await.expect("asset body");
    let zipped = get(&format!("/dashboard/{script}"))
        .header(header::ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .expect("asset gz");
    assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
    let zipped_len = zipped.bytes().await.expect("gz body").len();
    assert!(
        zipped_len < plain_body.len(),
        "{zipped_len} vs {}",
        plain_body.len()
    );

    // Missing files are 404 in the JSON envelope, never the app.
    for path in ["/dashboard/assets/nope.js", "/dashboard/favicon.ico"] {
        let resp = get(path).send().await.expect("missing");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["code"], "not_found");
    }
    // Path traversal stays inside the build.
    let resp = get("/dashboard/..%2F..%2FCargo.toml")
        .send()
        .await
        .expect("traversal");
    assert_ne!(resp.status(), StatusCode::OK);
    // Only GET/HEAD.
    let resp = http
        .post(format!("{}/dashboard/", app.url))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// With host routing on, the dashboard is still served on the platform host,
/// and a project host does not serve it (it belongs to the platform).
#[tokio::test]
async fn served_beside_host_routing() {
    let app = TestApp::spawn_with(|c| c.base_domain = Some("ferrobase.test".into())).await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/dashboard/", app.url))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .get(format!("{}/dashboard/", app.url))
        .header(header::HOST, "default.ferrobase.test")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// The main flows in headless Chromium: sign in (wrong password first),
/// projects (create, keys shown once), SQL editor (run, error position),
/// table editor (paging, sort, filter, inline edit, FK lookup), schema, auth
/// users (server-side search), storage (upload, resumable upload over TUS), realtime (channel,
/// change capture, live inspector over Socket.IO), webhooks (secret shown
/// once, delivery log, rotation), edge functions (secret names only; deploy,
/// invoke and schedules when Deno is there), AI (write-only provider key),
/// settings (per-project CORS enforced by the server; key rotation with a
/// typed confirmation, new keys shown once, old ones refused), logs (recent requests, audit log), no key in any URL, session expiry,
/// sign out, a narrow window; axe-core on each page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_in_chromium() {
    let Some(modules) = node_modules_with("playwright-core")
        .filter(|m| m.join("@axe-core/playwright/package.json").is_file())
    else {
        return missing_peer("playwright-core and @axe-core/playwright");
    };
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).is_file() {
        return missing_peer("chromium (apt-get install chromium)");
    }
    // With Deno the functions page deploys and invokes a function too.
    let deno = crate::functions::deno();
    let has_deno = deno.is_some();
    let app = TestApp::spawn_with(|c| {
        if let Some(d) = deno {
            c.functions.deno_bin = Some(d);
        }
    })
    .await;
    let out = std::env::var_os("FERROBASE_E2E_OUT")
        .map_or_else(|| temp_dir("fbt-dashboard-e2e"), PathBuf::from);
    let script = modules
        .parent()
        .expect("node_modules has a parent")
        .join("dashboard_e2e.mjs");
    let child = tokio::process::Command::new(node_bin())
        .arg(&script)
        .env("FERROBASE_URL", &app.url)
        .env("FERROBASE_ADMIN_EMAIL", &app.config.admin_email)
        .env(
            "FERROBASE_ADMIN_PASSWORD",
            ferrobase_server::config::exposed(&app.config.admin_password).unwrap_or_default(),
        )
        .env("FERROBASE_E2E_OUT", &out)
        .env("CHROMIUM", &chromium)
        .env("FERROBASE_E2E_DENO", if has_deno { "1" } else { "0" })
        .env("NODE_PATH", &modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the e2e run finishes within 5 minutes")
        .expect("node output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}\nscreenshots: {}", out.display());
    assert!(
        output.status.success(),
        "dashboard e2e failed (screenshots in {}):\n{stdout}\n{stderr}",
        out.display()
    );
    for page in [
        "sign-in",
        "projects",
        "sql",
        "table-editor",
        "realtime",
        "webhooks",
        "auth-users",
        "functions",
        "ai",
        "settings",
        "settings-rotated",
        "logs",
        "audit-log",
    ] {
        assert!(
            out.join(format!("{page}.png")).is_file(),
            "screenshot {page}"
        );
    }
}
