//! `auth`: what sessions cost (issue 4's benchmark).
//!
//! One project with auto-confirmed sign-ups and rate limits / lockout raised
//! far out of the way (`PUT /auth/v1/admin/config`; every request comes from
//! 127.0.0.1 and the defaults would answer 429 after 30 sign-ins), one user.
//! Then, each for `DURATION` seconds with `CONNS` concurrent clients:
//!
//! - `GET /health`: the floor (no project, no token, no database);
//! - `GET /auth/v1/user` with a valid access token: token verification plus
//!   the user lookup, next to the floor above;
//! - password sign-in at the default argon2id cost (`hey`, one account);
//! - refresh-token rotation: refresh tokens are single-use, so each of the
//!   `CONNS` client threads signs in once and then rotates its own chain
//!   (std HTTP client, one connection per request).
//!
//! Environment: `FERROBASE_BENCH_AUTH_DURATION` (seconds, default 10, 3 when
//! `CI=true`), `FERROBASE_BENCH_AUTH_CONNS` (default 20). Needs `hey` on PATH
//! (installed with apt when missing).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::load::{Load, LoadGen, Workload, env_num, fmt_load, login, str_field};
use super::server::Server;
use super::{Ctx, Table};
use crate::http;

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench-password-1";
/// Rate limits and lockout for the bench project: high enough never to trip.
const NO_LIMIT: u32 = 1_000_000_000;

pub fn run(ctx: &Ctx) -> Result<Table> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let duration = env_num("FERROBASE_BENCH_AUTH_DURATION", if ci { 3 } else { 10 })?;
    let conns = env_num("FERROBASE_BENCH_AUTH_CONNS", 20)?.max(1);
    let loadgen = LoadGen::from_env()?;
    let mut table = Table::new(format!(
        "auth ({conns} clients x {duration} s per workload, {})",
        loadgen.name()
    ));

    let mut server = Server::new(&ctx.bin)?;
    server.start()?;
    let base = server.base_url();
    let admin = login(&server)?;
    let project = http::post(
        &format!("{base}/platform/v1/projects"),
        Some(&admin),
        &json!({"ref": "bench-auth"}),
    )?
    .expect(201, "create project")?
    .json()?;
    let url = str_field(&project, "url")?;
    let anon = str_field(&project, "anon_key")?;
    let service = str_field(&project, "service_role_key")?;

    let config = json!({
        "mailer_autoconfirm": true,
        "rate_limit_sign_in_sign_ups": NO_LIMIT,
        "rate_limit_token_refresh": NO_LIMIT,
        "rate_limit_per_account": NO_LIMIT,
        "lockout_max_attempts": NO_LIMIT,
    });
    http::request(
        "PUT",
        &format!("{url}/auth/v1/admin/config"),
        Some(&service),
        Some(&config),
    )?
    .expect(200, "PUT auth admin config")?;
    println!("    auth config: {config}");

    let creds = json!({"email": EMAIL, "password": PASSWORD});
    let signup = http::post(&format!("{url}/auth/v1/signup"), Some(&anon), &creds)?
        .expect(200, "sign up")?
        .json()?;
    let access = str_field(&signup, "access_token")
        .context("sign-up returned no session (auto-confirm not applied?)")?;

    let apikey = ("apikey".to_owned(), anon.clone());
    let workloads = [
        Workload {
            name: "GET /health (floor)",
            method: "GET",
            url: format!("{base}/health"),
            headers: Vec::new(),
            body: None,
        },
        Workload {
            name: "GET /auth/v1/user (JWT)",
            method: "GET",
            url: format!("{url}/auth/v1/user"),
            headers: vec![
                apikey.clone(),
                ("Authorization".to_owned(), format!("Bearer {access}")),
            ],
            body: None,
        },
        Workload {
            name: "password sign-in",
            method: "POST",
            url: format!("{url}/auth/v1/token?grant_type=password"),
            headers: vec![
                apikey,
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ],
            body: Some(creds.to_string()),
        },
    ];
    let mut loads = Vec::new();
    for w in &workloads {
        let load = loadgen.run(w, conns, duration)?;
        println!("    {:<28} {}", w.name, fmt_load(&load));
        loads.push((w.name, load));
    }
    let refresh = refresh_load(&url, &anon, conns, duration)?;
    println!(
        "    {:<28} {}",
        "refresh-token rotation",
        fmt_load(&refresh)
    );
    loads.push(("refresh-token rotation", refresh));
    server.stop()?;

    for (name, load) in &loads {
        table.row(*name, fmt_load(load));
    }
    let (health, user) = (&loads[0].1, &loads[1].1);
    table.row(
        "JWT verify + user lookup over /health",
        format!(
            "p50 +{:.2} ms, p99 +{:.2} ms, {:.0}% of /health req/s",
            user.p50_ms - health.p50_ms,
            user.p99_ms - health.p99_ms,
            100.0 * user.rps / health.rps.max(f64::MIN_POSITIVE)
        ),
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    table.row(
        "CPU per sign-in (cores / rate, upper bound)",
        format!(
            "{:.1} ms ({cores} cores; argon2id default cost)",
            1000.0 * cores as f64 / loads[2].1.rps.max(f64::MIN_POSITIVE)
        ),
    );
    Ok(table)
}

/// `conns` threads for `duration` seconds, each signing in once and then
/// rotating its own refresh-token chain as fast as it can. A failed refresh
/// counts as an error and starts a new chain (that sign-in is not timed).
fn refresh_load(url: &str, anon: &str, conns: u64, duration: u64) -> Result<Load> {
    let token_url = format!("{url}/auth/v1/token?grant_type=refresh_token");
    let sign_in_url = format!("{url}/auth/v1/token?grant_type=password");
    let sign_in = || -> Result<String> {
        let r = http::post(
            &sign_in_url,
            Some(anon),
            &json!({"email": EMAIL, "password": PASSWORD}),
        )?
        .expect(200, "password sign-in")?
        .json()?;
        str_field(&r, "refresh_token")
    };
    // Chains first (argon2 is slow), so the timed part is refreshes only.
    let chains: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns).map(|_| s.spawn(sign_in)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("sign-in thread panicked"))
            })
            .collect::<Result<_>>()
    })?;
    let window = Duration::from_secs(duration);
    let started = Instant::now();
    let results: Vec<Result<(Vec<Duration>, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = chains
            .into_iter()
            .map(|mut token| {
                let (token_url, sign_in) = (&token_url, &sign_in);
                s.spawn(move || -> Result<(Vec<Duration>, u64)> {
                    let (mut times, mut errors) = (Vec::new(), 0u64);
                    while started.elapsed() < window {
                        let t0 = Instant::now();
                        let next =
                            http::post(token_url, Some(anon), &json!({"refresh_token": token}))
                                .and_then(|r| r.expect(200, "refresh"))
                                .and_then(|r| r.json())
                                .and_then(|v| str_field(&v, "refresh_token"));
                        match next {
                            Ok(t) => {
                                times.push(t0.elapsed());
                                token = t;
                            }
                            Err(e) => {
                                if errors == 0 {
                                    eprintln!("xtask: refresh failed: {e:#}");
                                }
                                errors += 1;
                                token = sign_in()?;
                            }
                        }
                    }
                    Ok((times, errors))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("refresh thread panicked"))
            })
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut times, mut errors) = (Vec::new(), 0);
    for r in results {
        let (t, e) = r?;
        times.extend(t);
        errors += e;
    }
    if times.is_empty() {
        bail!("no refresh succeeded ({errors} errors)");
    }
    times.sort_unstable();
    let pct = |p: f64| {
        let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1000.0
    };
    Ok(Load {
        rps: times.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        p99_is_max: false,
        errors,
    })
}
