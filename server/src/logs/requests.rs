//! The ring of recent requests of this node.
//!
//! A `std::sync::Mutex` around a `VecDeque`: the critical section is a push
//! or a copy of at most [`RequestLog::capacity`] small entries, never held
//! across an `.await`, so a lock-free structure would buy nothing here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::http::HeaderName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Entries kept per node by default.
pub const DEFAULT_CAPACITY: usize = 1000;
/// Longest path kept, in bytes (longer ones are cut on a char boundary).
const MAX_PATH: usize = 256;
/// The request-id header (set or accepted by the outer middleware).
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id kept (ids come from clients too).
const MAX_REQUEST_ID: usize = 64;

/// One finished request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestEntry {
    /// Sequence number on this node (increasing; use it as a cursor).
    pub seq: u64,
    /// When the response was ready.
    pub at: DateTime<Utc>,
    /// The `x-request-id` (generated when the client sent none).
    pub request_id: String,
    /// HTTP method.
    pub method: String,
    /// Path only: the query string is never recorded (it may carry keys).
    pub path: String,
    /// HTTP status answered.
    pub status: u16,
    /// Time to the response head, in milliseconds.
    pub latency_ms: f64,
    /// The project ref for `/p/{ref}/…` and project-host requests.
    pub project: Option<String>,
}

/// Filters of `GET /platform/v1/logs/requests`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct RequestFilter {
    /// Only this project ref.
    pub project: Option<String>,
    /// Only this method (case-insensitive).
    pub method: Option<String>,
    /// Only this exact status, or a class: `2xx`, `4xx`, `5xx`.
    pub status: Option<String>,
    /// Only paths containing this text.
    pub path: Option<String>,
    /// Only this request id.
    pub request_id: Option<String>,
    /// Only entries with `seq` below this (paging back).
    pub before: Option<u64>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

impl RequestFilter {
    fn matches(&self, e: &RequestEntry) -> bool {
        let status_ok = match self.status.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(s) => match s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
                Some(class) => class.parse::<u16>().is_ok_and(|c| e.status / 100 == c),
                None => s.parse::<u16>().is_ok_and(|c| e.status == c),
            },
        };
        status_ok
            && self
                .project
                .as_deref()
                .is_none_or(|p| e.project.as_deref() == Some(p))
            && self
                .method
                .as_deref()
                .is_none_or(|m| e.method.eq_ignore_ascii_case(m))
            && self.path.as_deref().is_none_or(|p| e.path.contains(p))
            && self.request_id.as_deref().is_none_or(|r| e.request_id == r)
            && self.before.is_none_or(|b| e.seq < b)
    }
}

#[derive(Debug, Default)]
struct Ring {
    next_seq: u64,
    entries: VecDeque<RequestEntry>,
}

/// The bounded log of this node's recent requests (cheap to clone).
#[derive(Debug, Clone)]
pub struct RequestLog {
    capacity: usize,
    ring: Arc<Mutex<Ring>>,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl RequestLog {
    /// A log keeping the last `capacity` requests (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ring: Arc::default(),
        }
    }

    /// How many entries are kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends an entry (its `seq` is assigned here), dropping the oldest
    /// when full.
    pub fn push(&self, mut entry: RequestEntry) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        entry.seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.entries.len() == self.capacity {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry);
    }

    /// The entries matching `filter`, newest first.
    pub fn query(&self, filter: &RequestFilter) -> Vec<RequestEntry> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.entries
            .iter()
            .rev()
            .filter(|e| filter.matches(e))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// `s` cut to at most `max` bytes on a char boundary.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The project of a (host-rewritten) path: `/p/{ref}/…`.
fn project_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/p/")?;
    let r = rest.split('/').next().filter(|r| !r.is_empty())?;
    Some(clip(r, 64))
}

/// A request being recorded: what [`begin`] took from it, completed by
/// [`Pending::finish`] when the response is ready.
#[derive(Debug)]
pub struct Pending {
    started: Instant,
    request_id: String,
    method: String,
    path: String,
    project: Option<String>,
}

/// What to record of `req`, or `None` for the dashboard's static assets
/// (they would push the API requests out of the ring).
pub fn begin<B>(req: &axum::http::Request<B>) -> Option<Pending> {
    let started = Instant::now();
    let path = req.uri().path();
    if path.starts_with("/dashboard/assets/") {
        return None;
    }
    // The kept path's first 256 bytes hold the whole ref's first 64.
    let path = clip(path, MAX_PATH);
    Some(Pending {
        started,
        request_id: req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map_or_else(String::new, |v| clip(v, MAX_REQUEST_ID)),
        method: req.method().as_str().to_owned(),
        project: project_of(&path),
        path,
    })
}

impl Pending {
    /// Records the request in `log` with the status answered.
    pub fn finish(self, log: &RequestLog, status: u16) {
        log.push(RequestEntry {
            seq: 0,
            at: Utc::now(),
            request_id: self.request_id,
            project: self.project,
            path: self.path,
            method: self.method,
            status,
            latency_ms: (self.started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, status: u16) -> RequestEntry {
        RequestEntry {
            seq: 0,
            at: Utc::now(),
            request_id: format!("id-{path}"),
            method: "GET".into(),
            path: path.into(),
            status,
            latency_ms: 1.0,
            project: project_of(path),
        }
    }

    #[test]
    fn keeps_only_the_last_entries_newest_first() {
        let log = RequestLog::new(3);
        for i in 0..5 {
            log.push(entry(&format!("/r{i}"), 200));
        }
        let all = log.query(&RequestFilter::default());
        let paths: Vec<_> = all.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/r4", "/r3", "/r2"]);
        assert_eq!(all[0].seq, 4);
        let older = log.query(&RequestFilter {
            before: Some(4),
            limit: Some(1),
            ..Default::default()
        });
        assert_eq!(older[0].path, "/r3");
    }

    #[test]
    fn filters() {
        let log = RequestLog::new(10);
        log.push(entry("/p/alpha/rest/v1/todos", 200));
        log.push(entry("/p/beta/rest/v1/todos", 404));
        log.push(entry("/platform/v1/projects", 500));
        let q = |f: RequestFilter| -> Vec<String> {
            log.query(&f).into_iter().map(|e| e.path).collect()
        };
        assert_eq!(
            q(RequestFilter {
                project: Some("alpha".into()),
                ..Default::default()
            }),
            ["/p/alpha/rest/v1/todos"]
        );
        assert_eq!(
            q(RequestFilter {
                status: Some("4xx".into()),
                ..Default::default()
            }),
            ["/p/beta/rest/v1/todos"]
        );
        assert_eq!(
            q(RequestFilter {
                status: Some("500".into()),
                ..Default::default()
            }),
            ["/platform/v1/projects"]
        );
        assert!(
            q(RequestFilter {
                status: Some("nonsense".into()),
                ..Default::default()
            })
            .is_empty()
        );
        assert_eq!(
            q(RequestFilter {
                path: Some("todos".into()),
                method: Some("get".into()),
                ..Default::default()
            })
            .len(),
            2
        );
    }

    #[test]
    fn project_and_clipping() {
        assert_eq!(project_of("/p/abc/rest/v1/x").as_deref(), Some("abc"));
        assert_eq!(project_of("/p//x"), None);
        assert_eq!(project_of("/platform/v1/projects"), None);
        assert_eq!(clip("ééé", 3), "é");
        assert_eq!(clip("abc", 10), "abc");
    }
}
