//! The data API (`/rest/v1`, issue 3) over a real socket: a table-driven
//! PostgREST conformance suite, RLS, injection, the official clients
//! (postgrest-js, Python postgrest), the SDK's query builder and a fuzzed
//! query string.
//!
//! Every case is `request → expected status, headers, body`; a table runs in
//! order against one project, so write cases see the effects of earlier ones.
//! A failing table reports every failing case at once.

mod aggregates;
mod embed;
mod fuzz;
mod injection;
mod limited;
mod peers;
mod pipeline;
mod plans;
mod read;
mod rls;
mod rpc;
mod schemas;
mod views;
mod write;

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestProject};

/// The conformance fixture: the schema of PostgREST's own examples, loaded
/// into a fresh project as its owner.
pub const FIXTURE: &str = include_str!("fixture.sql");

/// Subject (`sub`) of the default user token.
pub const USER_1: &str = "00000000-0000-4000-8000-000000000001";
/// Subject of a second user.
pub const USER_2: &str = "00000000-0000-4000-8000-000000000002";

/// A running server with one project loaded with some SQL.
pub struct Fx {
    pub t: TestApp,
    pub p: TestProject,
    pub project_ref: String,
}

impl Fx {
    /// A server and a project `r` with `sql` run as its owner.
    pub async fn new(r: &str, sql: &str) -> Fx {
        let t = TestApp::spawn().await;
        let p = t.create_project(r).await;
        t.owner_sql(&p, sql).await;
        Fx {
            t,
            p,
            project_ref: r.to_owned(),
        }
    }

    /// The conformance fixture in project `r`.
    pub async fn fixture(r: &str) -> Fx {
        Fx::new(r, FIXTURE).await
    }

    /// A user access token (role `authenticated`) signed with the project key.
    pub async fn user_token(&self, sub: &str) -> String {
        self.token(
            json!({"role": "authenticated", "sub": sub, "email": format!("{sub}@example.com")}),
        )
        .await
    }

    /// A token with these claims (plus `ref` and `exp`) signed with the project key.
    pub async fn token(&self, mut claims: Value) -> String {
        let project =
            ferrobase_server::platform::projects::load(&self.t.app.platform, &self.project_ref)
                .await
                .expect("load project")
                .expect("project exists");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        claims["ref"] = json!(self.project_ref);
        claims["exp"] = json!(now + 3600);
        project.keys[0].sign(&claims).expect("sign")
    }

    /// `{project}/rest/v1/{target}` as `who`.
    pub async fn request(
        &self,
        method: Method,
        target: &str,
        who: &Who,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}/rest/v1/{target}", self.p.url);
        let req = self.t.http.request(method, url);
        match who {
            Who::Anon => req.header("apikey", &self.p.anon),
            Who::Service => req
                .header("apikey", &self.p.service)
                .bearer_auth(&self.p.service),
            Who::User(sub) => req
                .header("apikey", &self.p.anon)
                .bearer_auth(self.user_token(sub).await),
            Who::Nobody => req,
        }
    }

    /// Runs the cases in order and fails with every mismatch.
    pub async fn run(&self, cases: Vec<Case>) {
        let mut failures = Vec::new();
        let total = cases.len();
        for c in cases {
            if let Err(why) = self.check(&c).await {
                failures.push(format!("[{}] {} {}: {why}", c.name, c.method, c.target));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {total} cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    async fn check(&self, c: &Case) -> Result<(), String> {
        let mut req = self.request(c.method.clone(), &c.target, &c.who).await;
        for (k, v) in &c.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(b) = &c.body {
            if !c
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("content-type", "application/json");
            }
            req = req.body(b.clone());
        }
        let resp = req.send().await.map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
        let mut bad = Vec::new();
        if c.status == REFUSED {
            if !(400..500).contains(&status) {
                bad.push(format!("status {status}, want 4xx"));
            }
        } else if status != c.status {
            bad.push(format!("status {status}, want {}", c.status));
        }
        if let Some(want) = &c.json {
            match serde_json::from_str::<Value>(&text) {
                Ok(got) if &got == want => {}
                Ok(got) => bad.push(format!("body {got}, want {want}")),
                Err(_) => bad.push(format!("body is not JSON, want {want}")),
            }
        }
        if let Some(want) = &c.text
            && &text != want
        {
            bad.push(format!("body {text:?}, want {want:?}"));
        }
        if let Some(code) = &c.code {
            let got: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if got["code"] != json!(code) {
                bad.push(format!("code {}, want {code}", got["code"]));
            }
            for key in ["code", "message", "details", "hint"] {
                if got.get(key).is_none() {
                    bad.push(format!("error without `{key}`"));
                }
            }
        }
        for (k, want) in &c.want_headers {
            let got = headers.get(k.as_str()).and_then(|v| v.to_str().ok());
            if got != want.as_deref() {
                bad.push(format!("header {k}: {got:?}, want {want:?}"));
            }
        }
        if status >= 500 {
            bad.push("server error".to_owned());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("{} (got: {status} {text})", bad.join("; ")))
        }
    }

    /// GET `target` as the service role and returns the JSON body.
    pub async fn service_get(&self, target: &str) -> Value {
        let resp = self
            .request(Method::GET, target, &Who::Service)
            .await
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "GET {target} as service_role");
        resp.json().await.expect("json")
    }
}

/// Marker status for "any 4xx".
pub const REFUSED: u16 = 0;

/// Who sends a request.
#[derive(Debug, Clone)]
pub enum Who {
    /// The anon key.
    Anon,
    /// The service-role key.
    Service,
    /// A user token with this `sub`.
    User(&'static str),
    /// No credentials at all.
    Nobody,
}

/// One request and what must come back.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub method: Method,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub who: Who,
    pub status: u16,
    pub json: Option<Value>,
    pub text: Option<String>,
    pub code: Option<String>,
    pub want_headers: Vec<(String, Option<String>)>,
}

/// A case `METHOD target`, sent as [`USER_1`], expecting 200 and nothing else.
pub fn case(name: &'static str, method: &str, target: &str) -> Case {
    Case {
        name,
        method: Method::from_bytes(method.as_bytes()).expect("method"),
        target: target.to_owned(),
        headers: Vec::new(),
        body: None,
        who: Who::User(USER_1),
        status: 200,
        json: None,
        text: None,
        code: None,
        want_headers: Vec::new(),
    }
}

/// `GET target`.
pub fn get(name: &'static str, target: &str) -> Case {
    case(name, "GET", target)
}

/// `POST target` with a JSON body.
pub fn post(name: &'static str, target: &str, body: &str) -> Case {
    case(name, "POST", target).body(body)
}

impl Case {
    /// Adds a request header.
    pub fn h(mut self, k: &str, v: &str) -> Case {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    /// `Prefer: v`.
    pub fn prefer(self, v: &str) -> Case {
        self.h("Prefer", v)
    }
    /// Sets the request body.
    pub fn body(mut self, b: &str) -> Case {
        self.body = Some(b.to_owned());
        self
    }
    /// Sends it as someone else.
    pub fn who(mut self, who: Who) -> Case {
        self.who = who;
        self
    }
    /// Expects this status and JSON body.
    pub fn is(mut self, status: u16, body: Value) -> Case {
        self.status = status;
        self.json = Some(body);
        self
    }
    /// Expects this status (body unchecked).
    pub fn status(mut self, status: u16) -> Case {
        self.status = status;
        self
    }
    /// Expects any 4xx status.
    pub fn refused(mut self) -> Case {
        self.status = REFUSED;
        self
    }
    /// Expects this status and exact text body.
    pub fn text(mut self, status: u16, body: &str) -> Case {
        self.status = status;
        self.text = Some(body.to_owned());
        self
    }
    /// Expects a PostgREST error with this status and code.
    pub fn err(mut self, status: u16, code: &str) -> Case {
        self.status = status;
        self.code = Some(code.to_owned());
        self
    }
    /// Expects a response header with this value.
    pub fn header(mut self, k: &str, v: &str) -> Case {
        self.want_headers
            .push((k.to_ascii_lowercase(), Some(v.to_owned())));
        self
    }
    /// Expects a response header to be absent.
    pub fn no_header(mut self, k: &str) -> Case {
        self.want_headers.push((k.to_ascii_lowercase(), None));
        self
    }
}

/// `[{"id": 1}, ...]`.
pub fn ids(v: &[i64]) -> Value {
    Value::Array(v.iter().map(|i| json!({ "id": i })).collect())
}
