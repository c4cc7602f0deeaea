//! Checks that keep the structure from drifting (see ARCHITECTURE.md,
//! "Layers"): imports point down, and the router and the OpenAPI document list
//! the same routes. Both read the sources, so they need no server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Leaves: they import no capability, no state and no app.
const LEAVES: &[&str] = &[
    "error",
    "db",
    "crypto",
    "config",
    "outbound",
    "throttle",
    "telemetry",
];

/// Capabilities: they may use each other's public functions, never each
/// other's `handlers`.
const CAPABILITIES: &[&str] = &[
    "platform",
    "tenant",
    "rest",
    "auth",
    "admin",
    "storage",
    "realtime",
    "webhooks",
    "functions",
    "ai",
    "dashboard",
    "logs",
    "backup",
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file relative to src, its code without comment lines)` for every file.
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src_dir())
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).expect("read source");
            let code = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            (rel, code)
        })
        .collect()
}

/// The top-level module a file belongs to (`auth/admin.rs` → `auth`).
fn top_module(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Every `crate::a::b` path in `code`, as `(a, b)` (`b` may be empty).
fn crate_paths(code: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let ident = |s: &str| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        };
        let first = ident(rest);
        let second = rest[first.len()..]
            .strip_prefix("::")
            .map(ident)
            .unwrap_or_default();
        out.push((first, second));
    }
    out
}

#[test]
fn imports_point_down() {
    let mut violations = Vec::new();
    for (rel, code) in sources() {
        let top = top_module(&rel);
        for (target, sub) in crate_paths(&code) {
            // Re-exports at the crate root name their module's item.
            let target = match target.as_str() {
                "Config" => "config".to_owned(),
                "App" | "AppState" => "state".to_owned(),
                "Platform" => "platform".to_owned(),
                "serve" => "app".to_owned(),
                _ => target,
            };
            if target == top {
                continue;
            }
            let why = if target == "app" && !matches!(top, "cli" | "main" | "lib") {
                Some("only the binary (cli/) may import app/ (router, serve loop)")
            } else if LEAVES.contains(&top) && !LEAVES.contains(&target.as_str()) {
                Some("a leaf imports only other leaves")
            } else if top == "state" && target == "app" {
                Some("the state sits below the router")
            } else if CAPABILITIES.contains(&top)
                && CAPABILITIES.contains(&target.as_str())
                && sub == "handlers"
            {
                Some("a capability never imports another capability's handlers")
            } else {
                None
            };
            if let Some(why) = why {
                violations.push(format!("{rel}: crate::{target}::{sub}: {why}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

/// The text of the call that starts at `open` (an opening parenthesis).
fn balanced(code: &str, open: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &code[open..=open + i];
                }
            }
            _ => {}
        }
    }
    &code[open..]
}

/// Routes declared with `.route("path", get(..).post(..))`, as full paths
/// (mount prefixes applied) with their methods.
fn declared_routes() -> BTreeMap<String, BTreeSet<String>> {
    let methods = ["get", "post", "put", "patch", "delete", "head", "any"];
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        if rel.starts_with("dashboard/") {
            continue; // the UI's own paths, not the API
        }
        for (i, _) in code.match_indices(".route(") {
            let call = balanced(&code, i + ".route".len());
            let Some(path) = call.split('"').nth(1) else {
                continue;
            };
            let absolute = [
                "/platform/",
                "/health",
                "/metrics",
                "/openapi.json",
                "/docs",
            ]
            .iter()
            .any(|p| path.starts_with(p));
            let full = if rel == "app/router.rs" && absolute {
                path.to_owned()
            } else if rel.starts_with("storage/") {
                format!("/p/{{ref}}/storage/v1{path}")
            } else {
                format!("/p/{{ref}}{path}")
            };
            // axum's `{*rest}` is OpenAPI's `{rest}`.
            let full = full.replace("{*", "{");
            let entry = out.entry(full).or_default();
            for m in methods {
                for prefix in ["(", ".", " ", "\n", "::"] {
                    if call.contains(&format!("{prefix}{m}(")) {
                        entry.insert(m.to_owned());
                    }
                }
            }
        }
    }
    out
}

fn documented_routes() -> BTreeMap<String, BTreeSet<String>> {
    let doc: serde_json::Value = serde_json::from_str(
        &ferrobase_server::app::openapi::document_json().expect("render the OpenAPI document"),
    )
    .expect("OpenAPI JSON");
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods = item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| !matches!(k.as_str(), "parameters" | "summary" | "description"))
            .cloned()
            .collect();
        out.insert(path.clone(), methods);
    }
    out
}

/// Routes deliberately left out of `/openapi.json`, with the reason.
const UNDOCUMENTED: &[(&str, &str)] = &[
    ("/docs", "the HTML page that renders the document"),
    ("/openapi.json", "the document itself"),
    (
        "/p/{ref}/rest/v1",
        "the data API: its own OpenAPI at GET /rest/v1/ (per schema)",
    ),
    (
        "/p/{ref}/rest/v1/",
        "the data API: its own OpenAPI at GET /rest/v1/ (per schema)",
    ),
    (
        "/p/{ref}/rest/v1/{path}",
        "the data API: its own OpenAPI at GET /rest/v1/ (per schema)",
    ),
    (
        "/p/{ref}/ai/v1/{rest}",
        "unknown AI endpoints: an OpenAI-shaped 404",
    ),
    (
        "/p/{ref}/functions/v1/{slug}/{rest}",
        "sub-paths of the documented invoke",
    ),
    (
        "/p/{ref}/storage/v1/bucket/",
        "trailing-slash alias of /bucket",
    ),
    (
        "/p/{ref}/storage/v1/upload/resumable/",
        "trailing-slash alias (TUS clients)",
    ),
    (
        "/p/{ref}/storage/v1/object/authenticated/{bucket}/{path}",
        "alias of /object/{bucket}/{path}",
    ),
    (
        "/p/{ref}/storage/v1/object/info/authenticated/{bucket}/{path}",
        "alias of /object/info/{bucket}/{path}",
    ),
];

#[test]
fn router_and_openapi_list_the_same_routes() {
    let declared = declared_routes();
    let documented = documented_routes();
    assert!(
        declared.len() > 50,
        "the route scan found too few routes: {declared:?}"
    );
    let mut problems = Vec::new();
    for (path, methods) in &declared {
        if UNDOCUMENTED.iter().any(|(p, _)| p == path) {
            continue;
        }
        let Some(doc_methods) = documented.get(path) else {
            problems.push(format!("routed but not documented: {path} {methods:?}"));
            continue;
        };
        for m in methods {
            if m != "any" && !doc_methods.contains(m) {
                problems.push(format!(
                    "routed but not documented: {} {path}",
                    m.to_uppercase()
                ));
            }
        }
    }
    for (path, methods) in &documented {
        let Some(routed) = declared.get(path) else {
            problems.push(format!("documented but not routed: {path} {methods:?}"));
            continue;
        };
        for m in methods {
            if !routed.contains(m) && !routed.contains("any") {
                problems.push(format!(
                    "documented but not routed: {} {path}",
                    m.to_uppercase()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
