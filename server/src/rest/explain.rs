//! Query plans: `Accept: application/vnd.pgrst.plan+json` (or `+text`, or bare
//! `application/vnd.pgrst.plan`, which is text) answers with PostgreSQL's `EXPLAIN`
//! of the statement the request would run, as PostgREST does, so a dashboard can show
//! why a query is slow. Media type parameters: `for="application/json"` (the media
//! type the plan is for: `application/json`, `application/vnd.pgrst.object+json` or
//! `text/csv`) and `options=analyze|verbose|settings|buffers|wal`.
//!
//! Who may ask is decided by the HTTP glue ([`super::RestRequest::plan_allowed`]):
//! by default only the service role, since a plan reveals table sizes and, with
//! `analyze`, runs the statement. The statement is explained inside the request's
//! transaction, as the caller (RLS applies), and the transaction is always rolled
//! back, so `analyze` of a write changes nothing.

use http::{HeaderMap, StatusCode};

use super::error::RestError;

/// Code of the internal "plan ready" signal that stops a request after its EXPLAIN
/// (never sent to a client: [`super::execute`] answers with the plan instead).
pub(crate) const PLAN_DONE: &str = "FBPLAN";

/// A parsed plan request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanRequest {
    /// `+json` (else text).
    pub(crate) json: bool,
    /// The media type the plan is for.
    pub(crate) for_media: String,
    /// EXPLAIN options besides FORMAT.
    options: Vec<&'static str>,
}

fn not_acceptable(what: String) -> RestError {
    RestError::new(
        StatusCode::NOT_ACCEPTABLE,
        "PGRST107",
        format!("None of these media types are available: {what}"),
    )
}

impl PlanRequest {
    /// The plan asked for in `Accept`, if any; 406 for unknown `for` or `options`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<PlanRequest>, RestError> {
        let Some(accept) = headers.get("accept").and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let mt = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let json = match mt.as_str() {
                "application/vnd.pgrst.plan+json" => true,
                "application/vnd.pgrst.plan+text" | "application/vnd.pgrst.plan" => false,
                _ => continue,
            };
            let mut plan = PlanRequest {
                json,
                for_media: "application/json".to_owned(),
                options: Vec::new(),
            };
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => {
                        let m = v.to_ascii_lowercase();
                        if !matches!(
                            m.as_str(),
                            "application/json" | "application/vnd.pgrst.object+json" | "text/csv"
                        ) {
                            return Err(not_acceptable(range.trim().to_owned()));
                        }
                        plan.for_media = m;
                    }
                    "options" => {
                        for o in v.split('|').map(str::trim).filter(|o| !o.is_empty()) {
                            let opt = match o.to_ascii_lowercase().as_str() {
                                "analyze" => "ANALYZE",
                                "verbose" => "VERBOSE",
                                "settings" => "SETTINGS",
                                "buffers" => "BUFFERS",
                                "wal" => "WAL",
                                _ => return Err(not_acceptable(range.trim().to_owned())),
                            };
                            if !plan.options.contains(&opt) {
                                plan.options.push(opt);
                            }
                        }
                    }
                    _ => {}
                }
            }
            return Ok(Some(plan));
        }
        Ok(None)
    }

    /// The parenthesised options of `EXPLAIN (…)`.
    pub(crate) fn options_sql(&self) -> String {
        let mut o = vec![if self.json {
            "FORMAT JSON"
        } else {
            "FORMAT TEXT"
        }];
        o.extend(self.options.iter().copied());
        o.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(accept: &str) -> Result<Option<PlanRequest>, RestError> {
        let mut h = HeaderMap::new();
        h.insert("accept", accept.parse().expect("header"));
        PlanRequest::from_headers(&h)
    }

    #[test]
    fn media_types_and_options() {
        assert_eq!(parse("application/json").unwrap(), None);
        let p = parse("application/vnd.pgrst.plan+json").unwrap().unwrap();
        assert!(p.json);
        assert_eq!(p.for_media, "application/json");
        assert_eq!(p.options_sql(), "FORMAT JSON");
        let p = parse(
            r#"application/vnd.pgrst.plan+text; for="text/csv"; options=analyze|verbose|analyze"#,
        )
        .unwrap()
        .unwrap();
        assert!(!p.json);
        assert_eq!(p.for_media, "text/csv");
        assert_eq!(p.options_sql(), "FORMAT TEXT, ANALYZE, VERBOSE");
        assert!(!parse("application/vnd.pgrst.plan").unwrap().unwrap().json);
        for bad in [
            "application/vnd.pgrst.plan+json; options=analyze) DELETE",
            "application/vnd.pgrst.plan+json; options=costs",
            r#"application/vnd.pgrst.plan+json; for="application/xml""#,
        ] {
            assert_eq!(
                parse(bad).unwrap_err().status,
                StatusCode::NOT_ACCEPTABLE,
                "{bad}"
            );
        }
    }
}
