//! Query plans (`Accept: application/vnd.pgrst.plan+json|+text`): the service
//! role gets PostgreSQL's EXPLAIN of the request's statement (reads, writes,
//! aggregates, rpc), `analyze` of a write is rolled back, other roles get 406
//! unless `FERROBASE_REST_PLAN_ROLES` names them, and bad options are 406.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Fx, USER_1, Who, case, get};
use crate::support::TestApp;

const PLAN_JSON: &str = "application/vnd.pgrst.plan+json";
const PLAN_TEXT: &str = "application/vnd.pgrst.plan+text";

/// The body of `method target` as `who` with `Accept: accept`, after checking the status.
async fn plan(
    fx: &Fx,
    method: Method,
    target: &str,
    who: &Who,
    accept: &str,
) -> (u16, String, String) {
    let resp = fx
        .request(method, target, who)
        .await
        .header("accept", accept)
        .header("content-type", "application/json")
        .body(r#"{"name":"planned"}"#)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, resp.text().await.expect("body"))
}

#[tokio::test]
async fn query_plans_for_the_service_role() {
    let fx = Fx::fixture("plans").await;
    let svc = Who::Service;

    let (status, ct, body) = plan(
        &fx,
        Method::GET,
        "todos?select=id,users!owner_id(name)&id=eq.1",
        &svc,
        PLAN_JSON,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ct,
        "application/vnd.pgrst.plan+json; for=\"application/json\"; charset=utf-8"
    );
    let v: Value = serde_json::from_str(&body).expect("json plan");
    assert!(v[0]["Plan"]["Node Type"].is_string(), "{v}");
    assert!(v[0]["Plan"]["Total Cost"].is_number(), "{v}");

    let (status, ct, body) = plan(
        &fx,
        Method::GET,
        "todos?select=done,id.count()",
        &svc,
        &format!("{PLAN_TEXT}; for=\"text/csv\""),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ct,
        "application/vnd.pgrst.plan+text; for=\"text/csv\"; charset=utf-8"
    );
    assert!(
        body.contains("Aggregate") && body.contains("cost="),
        "{body}"
    );

    // analyze runs the write, and it is rolled back
    let (status, _, body) = plan(
        &fx,
        Method::PATCH,
        "tags?id=eq.1",
        &svc,
        &format!("{PLAN_JSON}; options=analyze|verbose"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json plan");
    assert!(v[0]["Plan"]["Actual Rows"].is_number(), "{v}");
    assert!(v[0]["Execution Time"].is_number(), "{v}");
    assert_eq!(
        fx.service_get("tags?select=name&id=eq.1").await,
        json!([{"name":"urgent"}])
    );
    let (status, _, body) = plan(
        &fx,
        Method::DELETE,
        "tags?id=eq.3",
        &svc,
        &format!("{PLAN_JSON}; options=analyze"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fx.service_get("tags?select=id&id=eq.3").await,
        json!([{"id":3}])
    );

    let (status, _, body) = plan(&fx, Method::GET, "rpc/add?a=1&b=2", &svc, PLAN_TEXT).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cost="), "{body}");

    fx.run(vec![
        get("users may not", "todos")
            .h("Accept", PLAN_JSON)
            .err(406, "PGRST107"),
        get("anon may not", "todos")
            .who(Who::Anon)
            .h("Accept", PLAN_JSON)
            .err(406, "PGRST107"),
        get("unknown option", "todos")
            .who(Who::Service)
            .h("Accept", "application/vnd.pgrst.plan+json; options=costs")
            .err(406, "PGRST107"),
        get("injection in the options", "todos")
            .who(Who::Service)
            .h(
                "Accept",
                "application/vnd.pgrst.plan+json; options=analyze) select pg_sleep(5); --",
            )
            .err(406, "PGRST107"),
        get("unknown for", "todos")
            .who(Who::Service)
            .h(
                "Accept",
                "application/vnd.pgrst.plan+json; for=\"application/xml\"",
            )
            .err(406, "PGRST107"),
        get("a bad query is still a 400", "todos?select=nope")
            .who(Who::Service)
            .h("Accept", PLAN_JSON)
            .err(400, "42703"),
        case(
            "ordinary requests are unaffected",
            "GET",
            "tags?select=id&id=eq.1",
        )
        .is(200, json!([{"id":1}])),
    ])
    .await;
}

#[tokio::test]
async fn plan_roles_are_configurable() {
    let t = TestApp::spawn_with(|c| c.rest_plan_roles = "authenticated".into()).await;
    let p = t.create_project("plans-cfg").await;
    t.owner_sql(&p, super::FIXTURE).await;
    let fx = Fx {
        t,
        p,
        project_ref: "plans-cfg".into(),
    };
    let (status, _, body) = plan(
        &fx,
        Method::GET,
        "todos?select=id",
        &Who::User(USER_1),
        PLAN_JSON,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = plan(
        &fx,
        Method::GET,
        "todos?select=id",
        &Who::Service,
        PLAN_JSON,
    )
    .await;
    assert_eq!(status, 406);
}
