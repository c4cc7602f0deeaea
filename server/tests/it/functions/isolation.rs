//! A hostile function of project B tries to reach project A's code, secrets
//! and function, the server's files and environment, other processes and
//! the network; every attempt must be refused, while B's own environment and
//! its own project API stay reachable.

use reqwest::Method;
use serde_json::{Value, json};

use super::Fx;

#[tokio::test]
async fn a_hostile_function_cannot_reach_another_project_or_the_host() {
    let Some(fx) = Fx::new("fn-iso-a").await else {
        return;
    };
    // Project A: a secret and a function holding a secret in its code.
    let resp = fx
        .admin(Method::POST, "functions/secrets")
        .json(&json!({"A_SECRET": "secret-of-project-a"}))
        .send()
        .await
        .expect("secret");
    assert_eq!(resp.status(), 200);
    fx.deploy("victim", "const CODE_SECRET = 'code-of-project-a'; export default { fetch: () => new Response(Deno.env.get('A_SECRET')) };").await;
    let resp = fx.call(Method::GET, "victim").send().await.expect("victim");
    assert_eq!(resp.text().await.expect("text"), "secret-of-project-a");

    // Where A's code lives on disk, and a canary in the server's data dir.
    let data_dir = fx.t.config.data_dir.clone();
    let a_root = data_dir.join("functions/projects");
    let a_project = std::fs::read_dir(&a_root)
        .expect("projects dir")
        .flatten()
        .next()
        .expect("A's dir")
        .path();
    let a_version = std::fs::read_dir(a_project.join("victim"))
        .expect("victim dir")
        .flatten()
        .next()
        .expect("version")
        .path();
    let a_file = a_version.join("index.ts");
    assert!(
        std::fs::read_to_string(&a_file)
            .expect("A's code")
            .contains("code-of-project-a")
    );
    let canary = data_dir.join("canary.txt");
    std::fs::write(&canary, "server-private").expect("canary");

    // Project B, same server: its function tries everything.
    let b = fx.t.create_project("fn-iso-b").await;
    let hostile = format!(
        r#"
const results: Record<string, string> = {{}};
async function attempt(name: string, f: () => Promise<unknown> | unknown) {{
  try {{ results[name] = "ALLOWED: " + String(await f()).slice(0, 80); }}
  catch (e) {{ results[name] = "denied: " + (e instanceof Error ? e.name : String(e)); }}
}}
export default {{ async fetch() {{
  await attempt("read other project's code", () => Deno.readTextFile({a_file:?}));
  await attempt("import other project's code", () => import({a_file_url:?}));
  await attempt("list other project's dir", async () => {{ for await (const e of Deno.readDir({a_root:?})) return e.name; }});
  await attempt("read server data dir", () => Deno.readTextFile({canary:?}));
  await attempt("read /etc/passwd", () => Deno.readTextFile("/etc/passwd"));
  await attempt("read /proc/self/environ", () => Deno.readTextFile("/proc/self/environ"));
  await attempt("read /proc/1/environ", () => Deno.readTextFile("/proc/1/environ"));
  const visible = (name: string) => {{ const v = Deno.env.get(name); if (v === undefined) throw new Error("not visible"); return v; }};
  await attempt("server env var", () => visible("FERROBASE_TEST_DATABASE_URL"));
  await attempt("server PATH", () => visible("PATH"));
  await attempt("whole env", () => JSON.stringify(Deno.env.toObject()));
  await attempt("other project's secret", () => visible("A_SECRET"));
  await attempt("spawn a process", async () => (await new Deno.Command("/bin/sh", {{ args: ["-c", "id"] }}).output()).code);
  await attempt("write a file", () => Deno.writeTextFile("/tmp/fn-iso-b-was-here", "x"));
  await attempt("ffi", () => Deno.dlopen("/lib/x86_64-linux-gnu/libc.so.6", {{}}));
  await attempt("system info", () => Deno.hostname());
  await attempt("cloud metadata", async () => (await fetch("http://169.254.169.254/latest/meta-data/")).status);
  await attempt("arbitrary host", async () => (await fetch("http://10.1.2.3:5432/")).status);
  await attempt("raw tcp to localhost postgres", () => Deno.connect({{ hostname: "127.0.0.1", port: 5432 }}));
  // Allowed and harmless: its own env, its own project's API.
  const own = Deno.env.get("FERROBASE_URL");
  const viaApi = await fetch({a_url:?}, {{ headers: {{ apikey: Deno.env.get("FERROBASE_ANON_KEY")! }} }});
  return Response.json({{ results, own, viaApiStatus: viaApi.status }});
}} }};
"#,
        a_file = a_file.display().to_string(),
        a_file_url = format!("file://{}", a_file.display()),
        a_root = a_root.display().to_string(),
        canary = canary.display().to_string(),
        a_url = format!("{}/functions/v1/victim", fx.p.url),
    );
    let resp =
        fx.t.http
            .post(format!("{}/admin/v1/functions", b.url))
            .bearer_auth(&b.service)
            .json(&json!({"slug": "hostile", "code": hostile}))
            .send()
            .await
            .expect("deploy hostile");
    assert_eq!(resp.status(), 201);
    let resp =
        fx.t.http
            .get(format!("{}/functions/v1/hostile", b.url))
            .bearer_auth(&b.anon)
            .send()
            .await
            .expect("invoke hostile");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    let results = v["results"].as_object().expect("results");
    assert_eq!(results.len(), 18, "{v}");
    for (name, outcome) in results {
        assert!(
            outcome.as_str().is_some_and(|o| o.starts_with("denied")),
            "hostile attempt {name:?} was not refused: {outcome}"
        );
    }
    assert_eq!(v["own"], b.url);
    // B reaches A's function only through the public API, which wants A's keys.
    assert_eq!(v["viaApiStatus"], 401, "{v}");
    assert!(!std::path::Path::new("/tmp/fn-iso-b-was-here").exists());
    // A is unaffected.
    let resp = fx.call(Method::GET, "victim").send().await.expect("victim");
    assert_eq!(resp.text().await.expect("text"), "secret-of-project-a");
}

/// Functions answer from the platform's own origin, the one the dashboard is
/// served from. A page a project admin deploys as a function must not run
/// as that origin: it could script a dashboard window it opens (and read the
/// admin's password or token as it is typed or sent), or register a service
/// worker over the whole origin (with `Service-Worker-Allowed: /`) that
/// intercepts every later dashboard and API request. Function responses are
/// therefore sandboxed (an opaque origin: scripts and forms still work) and
/// may not widen a service worker's scope.
#[tokio::test]
async fn a_function_page_cannot_act_as_the_dashboards_origin() {
    let Some(fx) = Fx::new("fn-origin").await else {
        return;
    };
    fx.deploy(
        "page",
        r#"export default { fetch: (req: Request) => new URL(req.url).pathname.endsWith("/sw.js")
  ? new Response("self.onfetch = (e) => {};", { headers: { "content-type": "text/javascript", "service-worker-allowed": "/" } })
  : new Response("<script>const w = open('/dashboard/'); navigator.serviceWorker.register('sw.js', { scope: '/' });</script>",
      { headers: { "content-type": "text/html", "content-security-policy": "img-src *" } }) };"#,
    )
    .await;
    // The dashboard is on the same origin as the function.
    let dash =
        fx.t.http
            .get(format!("{}/dashboard/", fx.t.url))
            .send()
            .await
            .expect("dashboard");
    assert_eq!(dash.status(), 200);
    assert!(fx.p.url.starts_with(&fx.t.url), "{} {}", fx.p.url, fx.t.url);

    for path in ["page", "page/sw.js"] {
        let resp = fx.call(Method::GET, path).send().await.expect("invoke");
        assert_eq!(resp.status(), 200, "{path}");
        let csp: Vec<String> = resp
            .headers()
            .get_all("content-security-policy")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let sandboxed = csp.iter().any(|p| {
            p.split(';').any(|d| {
                let mut words = d.split_whitespace();
                words.next() == Some("sandbox") && !words.any(|w| w == "allow-same-origin")
            })
        });
        assert!(
            sandboxed,
            "{path}: the function's response runs as the platform's origin: {csp:?}"
        );
        assert!(
            resp.headers().get("service-worker-allowed").is_none(),
            "{path}: a function may widen a service worker's scope to the whole origin"
        );
        if path == "page" {
            // The function's own policy is kept (both are enforced).
            assert!(csp.iter().any(|p| p == "img-src *"), "{csp:?}");
            assert!(resp.text().await.expect("body").contains("serviceWorker"));
        }
    }
}

/// Deno keeps `localStorage` on disk, in its cache directory, under the
/// process's "origin": without `--location` or `--config` that is the main
/// module, here the host script every function runs. A value one project's
/// function stores must not be readable (or writable) by another project's
/// functions, nor by the project's other functions; a function still reads
/// back its own.
#[tokio::test]
async fn web_storage_is_not_shared_between_functions_or_projects() {
    let Some(fx) = Fx::new("fn-storage-a").await else {
        return;
    };
    fx.deploy(
        "keeper",
        "export default { fetch: () => { const before = localStorage.getItem('k'); \
         localStorage.setItem('k', 'secret-of-a'); return new Response(String(before)); } };",
    )
    .await;
    for expected in ["null", "secret-of-a"] {
        let resp = fx.call(Method::GET, "keeper").send().await.expect("keeper");
        assert_eq!(resp.text().await.expect("text"), expected);
    }
    let peek = "export default { fetch: () => new Response(String(localStorage.getItem('k'))) };";
    // The same project's other function, one file or with an import map.
    fx.deploy("peek", peek).await;
    fx.deploy_with(
        "peek-mapped",
        json!({"files": {"index.ts": peek, "import_map.json": "{\"imports\": {}}"}}),
    )
    .await;
    // Another project's functions.
    let b = fx.t.create_project("fn-storage-b").await;
    for (slug, body) in [
        ("peek", json!({"slug": "peek", "code": peek})),
        (
            "peek-mapped",
            json!({"slug": "peek-mapped", "files": {"index.ts": peek, "import_map.json": "{\"imports\": {}}"}}),
        ),
    ] {
        let resp =
            fx.t.http
                .post(format!("{}/admin/v1/functions", b.url))
                .bearer_auth(&b.service)
                .json(&body)
                .send()
                .await
                .expect("deploy in b");
        assert_eq!(resp.status(), 201, "{slug}");
    }
    let mut seen = Vec::new();
    for slug in ["peek", "peek-mapped"] {
        let own = fx.call(Method::GET, slug).send().await.expect("peek a");
        seen.push((format!("a/{slug}"), own.text().await.expect("text")));
        let other =
            fx.t.http
                .get(format!("{}/functions/v1/{slug}", b.url))
                .bearer_auth(&b.anon)
                .send()
                .await
                .expect("peek b");
        seen.push((format!("b/{slug}"), other.text().await.expect("text")));
    }
    for (who, value) in &seen {
        assert_eq!(value, "null", "{who} read keeper's localStorage: {seen:?}");
    }
}

/// A `deno.json` is read by the Deno CLI itself, outside the permission
/// sandbox: its `lock` path made Deno read the lock file from wherever the
/// function's author chose (a file outside the function: the boot failed
/// naming it, so any path could be probed) and, once an `npm:` import is
/// resolved, write it there (checked by hand: over the server's files or
/// another project's code). The lock file is off for every function.
#[tokio::test]
async fn a_deno_json_cannot_make_deno_touch_files_outside_the_function() {
    let Some(fx) = Fx::new("fn-lockfile").await else {
        return;
    };
    let canary = fx.t.config.data_dir.join("canary.txt");
    std::fs::write(&canary, "server-private").expect("canary");
    let elsewhere = fx.t.config.data_dir.join("written-by-a-function.lock");
    for (slug, target) in [("existing", &canary), ("missing", &elsewhere)] {
        fx.deploy_with(
            slug,
            json!({"files": {
                "index.ts": "export default { fetch: () => new Response('ran') };",
                "deno.json": json!({"lock": {"path": target, "frozen": false}}).to_string(),
            }}),
        )
        .await;
        let resp = fx.call(Method::GET, slug).send().await.expect("invoke");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("text");
        assert!(
            !text.contains(&*target.to_string_lossy()),
            "{slug}: Deno used a lock file outside the function: {text}"
        );
        assert_eq!((status, text.as_str()), (200, "ran"), "{slug}");
    }
    assert_eq!(
        std::fs::read_to_string(&canary).expect("canary"),
        "server-private"
    );
    assert!(
        !elsewhere.exists(),
        "a lock file was written outside the function"
    );
}

/// The Deno CLI fetches `npm:` packages itself, outside `--allow-net` and
/// `--deny-net`, from the registry an `.npmrc` next to the code names: a
/// function's author could make the server send requests to any address it
/// reaches (cloud metadata, internal services) and tell from the boot error
/// what answered. The registry is the operator's (`NPM_CONFIG_REGISTRY`):
/// a bundle with an `.npmrc` is refused, and nothing is fetched.
#[tokio::test]
async fn a_function_cannot_choose_the_npm_registry() {
    let Some(fx) = Fx::new("fn-npmrc").await else {
        return;
    };
    // Stands for an internal service: it must never be asked anything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let internal = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "internal"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let code = "import x from 'npm:tiny-pkg@1.0.0'; export default { fetch: () => new Response(String(x)) };";
    for npmrc in [".npmrc", "lib/.npmrc"] {
        let resp = fx
            .admin(Method::POST, "functions")
            .json(&json!({"slug": "registry", "files": {
                "index.ts": code,
                npmrc: format!("registry={internal}/\n"),
            }}))
            .send()
            .await
            .expect("deploy");
        super::expect_error(resp, 400, "invalid_function").await;
    }
    // Had it been deployed, its first invocation would have asked the
    // "internal" address for the package.
    let resp = fx
        .call(Method::GET, "registry")
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 404);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Other settings of a `deno.json` that name files are read by the Deno
/// CLI outside the sandbox too: `importMap` pointed anywhere, and the
/// resolver's diagnostics (in the boot error the caller gets) quoted the
/// values of the file's `imports`. A config may only name the bundle's own
/// import map, and `workspace`, `links` and `patch` are refused.
#[tokio::test]
async fn a_deno_json_cannot_read_files_outside_the_function() {
    let Some(fx) = Fx::new("fn-config").await else {
        return;
    };
    let server_file = fx.t.config.data_dir.join("server-settings.json");
    std::fs::write(&server_file, r#"{"imports": {"k": "server-secret-value"}}"#).expect("file");
    let code = "import 'k'; export default { fetch: () => new Response('ran') };";
    for (name, config) in [
        ("import map outside", json!({"importMap": server_file})),
        (
            "import map upwards",
            json!({"importMap": "../../../server-settings.json"}),
        ),
        ("workspace", json!({"workspace": ["../other"]})),
        ("links", json!({"links": ["/tmp"]})),
    ] {
        let resp = fx
            .admin(Method::POST, "functions")
            .json(&json!({"slug": "config", "files": {"index.ts": code, "deno.json": config.to_string()}}))
            .send()
            .await
            .expect("deploy");
        let body = super::expect_error(resp, 400, "invalid_function").await;
        assert!(!body.to_string().contains("server-secret-value"), "{name}");
    }
    let resp = fx.call(Method::GET, "config").send().await.expect("invoke");
    assert_eq!(resp.status(), 404, "nothing was deployed");
    // The bundle's own import map, named by its config, works.
    fx.deploy_with(
        "own-map",
        json!({"files": {
            "index.ts": "import n from 'num'; export default { fetch: () => new Response(String(n)) };",
            "lib/num.ts": "export default 7;",
            "deno.json": "{\"importMap\": \"./maps/imports.json\"}",
            "maps/imports.json": "{\"imports\": {\"num\": \"../lib/num.ts\"}}",
        }}),
    )
    .await;
    let resp = fx
        .call(Method::GET, "own-map")
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.text().await.expect("text"), "7");
}
