//! Attacks on the hub through the Rust SDK: what a subscriber may learn
//! from change events, and what a socket keeps when its token changes.

use std::time::Duration;

use ferrobase::{Client, RealtimeEvent};
use serde_json::{Value, json};

use super::fixture;
use crate::rest::{USER_1, USER_2};

const WAIT: Duration = Duration::from_secs(5);

/// Notes are readable by their owner, and by everybody once shared.
const NOTES: &str = "
create table notes (
  id bigint primary key,
  owner uuid not null,
  shared boolean not null default false,
  body text not null
);
alter table notes enable row level security;
create policy notes_read on notes for select to authenticated
  using (shared or owner = auth.uid());
";

/// The next change event, skipping presence and messages.
async fn next_change(sub: &mut ferrobase::Subscription) -> ferrobase::Change {
    loop {
        match sub.next_timeout(WAIT).await {
            Some(RealtimeEvent::Change(c)) => return c,
            Some(_) => continue,
            None => panic!("no change event within {WAIT:?}"),
        }
    }
}

/// An UPDATE that makes a row visible to a subscriber must not show the
/// row as it was before, which that subscriber could never read (a private
/// draft becoming a shared note): like Supabase with RLS on, the old record
/// of a row the subscriber could not see carries only its primary key.
#[tokio::test]
async fn an_update_event_never_shows_the_old_row_the_subscriber_could_not_read() {
    let fx = fixture("rt-sec-old").await;
    fx.t.owner_sql(&fx.p, NOTES).await;
    let service = Client::new(&fx.p.url, &fx.p.service).expect("service client");
    service
        .realtime_admin()
        .enable_changes("public", "notes", true, true, true)
        .await
        .expect("enable changes");
    let anon = Client::new(&fx.p.url, &fx.p.anon).expect("client");
    let b = anon
        .clone()
        .with_access_token(fx.user_token(USER_2).await)
        .realtime()
        .await
        .expect("connect b");
    let a = anon
        .with_access_token(fx.user_token(USER_1).await)
        .realtime()
        .await
        .expect("connect a");
    let mut b_changes = b.subscribe("db:public:notes").await.expect("b subscribes");
    let mut a_changes = a.subscribe("db:public:notes").await.expect("a subscribes");

    fx.t.owner_sql(
        &fx.p,
        &format!("insert into notes values (1, '{USER_1}', false, 'secret draft')"),
    )
    .await;
    fx.t.owner_sql(
        &fx.p,
        "update notes set shared = true, body = 'published' where id = 1",
    )
    .await;

    // The owner saw both versions and gets the whole old row.
    assert_eq!(next_change(&mut a_changes).await.kind, "INSERT");
    let own = next_change(&mut a_changes).await;
    assert_eq!(own.kind, "UPDATE");
    assert_eq!(
        own.old_record.as_ref().map(|r| r["body"].clone()),
        Some(json!("secret draft"))
    );

    // B only ever could read the shared version.
    let change = next_change(&mut b_changes).await;
    assert_eq!(change.kind, "UPDATE", "B never saw the private insert");
    assert_eq!(
        change.record.as_ref().map(|r| r["body"].clone()),
        Some(json!("published"))
    );
    let old = change.old_record.clone().unwrap_or(Value::Null);
    assert!(
        !old.to_string().contains("secret draft"),
        "the old row leaked to a subscriber who could not read it: {old}"
    );
    assert_eq!(old, json!({"id": 1}), "only the primary key is kept");
    a.close();
    b.close();
}

/// A socket that switches tokens (sign-out, or another user signing in on
/// the same device) must leave the private channels the new token may not
/// read, instead of keeping what the old token was allowed; a fresh token of
/// the same user keeps them.
#[tokio::test]
async fn a_new_token_leaves_private_channels_it_may_not_read() {
    let fx = fixture("rt-sec-reauth").await;
    let service = Client::new(&fx.p.url, &fx.p.service).expect("service client");
    let anon = Client::new(&fx.p.url, &fx.p.anon).expect("client");
    let a = anon
        .with_access_token(fx.user_token(USER_1).await)
        .realtime()
        .await
        .expect("connect a");
    let mut errors = a.errors();
    let room = format!("room:{USER_1}");
    let mut private = a.subscribe(&room).await.expect("A reads its room");
    let mut public = a.subscribe("public:lobby").await.expect("public");

    // Publishes on A's room, then on the public channel, and returns whether
    // the room's message arrived before the public one (same socket, in
    // outbox order).
    async fn room_delivered(
        service: &Client,
        room: &str,
        private: &mut ferrobase::Subscription,
        public: &mut ferrobase::Subscription,
    ) -> bool {
        let secret = service
            .publish(room, "chat", json!({"text": "for A only"}))
            .await
            .expect("publish on the room");
        let marker = service
            .publish("public:lobby", "chat", json!({"text": "marker"}))
            .await
            .expect("publish marker");
        loop {
            match public.next_timeout(WAIT).await {
                Some(RealtimeEvent::Message(m)) if m.meta.message_id == marker => break,
                Some(_) => continue,
                None => panic!("the public marker never arrived"),
            }
        }
        loop {
            match private.next_timeout(Duration::from_millis(300)).await {
                Some(RealtimeEvent::Message(m)) if m.meta.message_id == secret => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    }

    assert!(room_delivered(&service, &room, &mut private, &mut public).await);
    // A fresh token of the same user keeps the room.
    a.set_token(&fx.user_token(USER_1).await)
        .await
        .expect("refresh");
    assert!(room_delivered(&service, &room, &mut private, &mut public).await);

    // Signed out: back to the anon key.
    a.set_token(&fx.p.anon).await.expect("switch to anon");
    let err = tokio::time::timeout(WAIT, errors.recv())
        .await
        .expect("an error names the channel left")
        .expect("error stream open");
    assert_eq!(err.code, "forbidden");
    assert_eq!(err.channel.as_deref(), Some(room.as_str()));
    assert!(
        !room_delivered(&service, &room, &mut private, &mut public).await,
        "a socket signed out still receives the private room"
    );

    // Another user on the same socket does not get A's room either.
    a.set_token(&fx.user_token(USER_2).await)
        .await
        .expect("switch to B");
    assert!(!room_delivered(&service, &room, &mut private, &mut public).await);
    a.close();
}

/// Presence shows who holds the socket now: after a token change to another
/// identity (sign-out, another user signing in on the same socket), the
/// socket no longer appears as the first user, who could otherwise be
/// impersonated with `presence:update` by whoever holds the socket next.
#[tokio::test]
async fn presence_follows_the_sockets_current_token() {
    let fx = fixture("rt-sec-presence").await;
    let anon = Client::new(&fx.p.url, &fx.p.anon).expect("client");
    let a = anon
        .clone()
        .with_access_token(fx.user_token(USER_1).await)
        .realtime()
        .await
        .expect("connect a");
    let observer = anon.realtime().await.expect("connect observer");
    let joined = a
        .subscribe_with("public:lobby", json!({"status": "here"}))
        .await
        .expect("a joins");
    let me = joined.members()[0].presence_id.clone();
    let members = |sub: &ferrobase::Subscription| -> Vec<(Option<String>, String, Value)> {
        sub.members()
            .iter()
            .filter(|m| m.presence_id == me)
            .map(|m| (m.user_id.clone(), m.kind.clone(), m.state.clone()))
            .collect()
    };
    let seen = observer.observe("public:lobby").await.expect("observe");
    let here = json!({"status": "here"});
    assert_eq!(
        members(&seen),
        [(Some(USER_1.to_owned()), "user".into(), here.clone())]
    );
    observer
        .unsubscribe("public:lobby")
        .await
        .expect("unsubscribe");

    // Signed out, then B signs in on the same socket.
    a.set_token(&fx.p.anon).await.expect("switch to anon");
    let seen = observer.observe("public:lobby").await.expect("observe");
    // The state set before is kept across the change.
    assert_eq!(
        members(&seen),
        [(None, "anon".into(), here)],
        "after sign-out"
    );
    observer
        .unsubscribe("public:lobby")
        .await
        .expect("unsubscribe");
    a.set_token(&fx.user_token(USER_2).await)
        .await
        .expect("switch to B");
    a.update_presence("public:lobby", json!({"status": "I am A"}))
        .await
        .expect("update");
    let seen = observer.observe("public:lobby").await.expect("observe");
    assert_eq!(
        members(&seen),
        [(
            Some(USER_2.to_owned()),
            "user".into(),
            json!({"status": "I am A"})
        )],
        "B's presence must not be shown as A's"
    );
    a.close();
    observer.close();
}

/// Anonymous reads of `room:*` are refused, slowly: the check records that
/// it started (a sequence, visible outside its transaction) and takes a
/// second and a half, so a test can publish while a token change is being
/// re-checked.
const SLOW_ANON_CHECK: &str = "
create sequence anon_room_checks;
grant usage on sequence anon_room_checks to anon;
create function public.slow_anon_refusal() returns boolean language plpgsql as $$
begin
  if coalesce(current_setting('test.slept', true), '') = '' then
    perform set_config('test.slept', '1', true);
    perform nextval('public.anon_room_checks');
    perform pg_sleep(1.5);
  end if;
  return false;
end $$;
create policy rt_read_anon on realtime.messages for select to anon
  using (case when realtime.topic() like 'room:%' then public.slow_anon_refusal() else false end);
";

/// A token change is not done when the new token is stored: until the
/// socket's private channels have been re-checked, a message of a channel
/// the new token may not read must not reach it. Messages published while
/// the re-check runs are held, then dropped for the channels left and
/// delivered for the others.
#[tokio::test]
async fn messages_sent_during_a_token_change_follow_the_new_token() {
    let fx = fixture("rt-sec-hold").await;
    fx.t.owner_sql(&fx.p, SLOW_ANON_CHECK).await;
    let service = Client::new(&fx.p.url, &fx.p.service).expect("service client");
    let a = Client::new(&fx.p.url, &fx.p.anon)
        .expect("client")
        .with_access_token(fx.user_token(USER_1).await)
        .realtime()
        .await
        .expect("connect a");
    let room = format!("room:{USER_1}");
    let mut private = a.subscribe(&room).await.expect("A reads its room");
    let mut public = a.subscribe("public:lobby").await.expect("public");

    async fn next_id(sub: &mut ferrobase::Subscription, wait: Duration) -> Option<String> {
        loop {
            match sub.next_timeout(wait).await? {
                RealtimeEvent::Message(m) => return Some(m.meta.message_id),
                _ => continue,
            }
        }
    }
    let before = service
        .publish(&room, "chat", json!({"text": "before"}))
        .await
        .expect("publish before");
    assert_eq!(next_id(&mut private, WAIT).await, Some(before));

    let cfg: tokio_postgres::Config = fx.p.db_url.parse().expect("db_url");
    let owner = ferrobase_server::db::connect(&cfg).await.expect("owner");
    let checks = async || -> bool {
        owner
            .query_one("select is_called from anon_room_checks", &[])
            .await
            .expect("read the sequence")
            .get(0)
    };
    assert!(!checks().await);

    // Sign out (back to the anon key); publish while the re-check runs.
    let switch = a.set_token(&fx.p.anon);
    let during = async {
        let started = std::time::Instant::now();
        while !checks().await {
            assert!(started.elapsed() < WAIT, "the re-check never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secret = service
            .publish(&room, "chat", json!({"text": "during"}))
            .await
            .expect("publish on the room");
        let lobby = service
            .publish("public:lobby", "chat", json!({"text": "during"}))
            .await
            .expect("publish on the lobby");
        (secret, lobby)
    };
    let (switched, (secret, lobby)) = tokio::join!(switch, during);
    switched.expect("switch to anon");

    // The lobby's message is delivered (held, then released)...
    assert_eq!(next_id(&mut public, WAIT).await, Some(lobby));
    // ...the room's is not: the new token may not read it.
    let leaked = next_id(&mut private, Duration::from_millis(500)).await;
    assert!(
        leaked.is_none(),
        "the signed-out socket received {leaked:?} (the room message sent during the change was {secret})"
    );
    a.close();
}

/// A project's own SQL function that writes realtime messages, called by anon
/// or a user, cannot make a message pose as the service, as another user or
/// as a database change (which webhooks would deliver as a signed change
/// event): the sender is the caller, the kind a broadcast. The server's own
/// writes keep their kind and sender.
#[tokio::test]
async fn a_message_written_in_sql_by_a_caller_cannot_forge_its_sender_or_kind() {
    let fx = fixture("rt-sec-forge").await;
    fx.t.owner_sql(
        &fx.p,
        "create policy rt_any_write on realtime.messages for insert to anon, authenticated
           with check (true);
         create function public.send(topic text, kind text, st text, sid text) returns void
           language sql security invoker
           as $$ insert into realtime.messages (topic, event, payload, kind, sender_type, sender_id)
                 values (topic, 'INSERT', '{\"record\": {\"id\": 1}}', kind, st, sid) $$;
         grant execute on function public.send(text, text, text, text) to anon, authenticated;",
    )
    .await;
    let http = reqwest::Client::new();
    let user = fx.user_token(USER_1).await;
    for (bearer, topic) in [(&fx.p.anon, "db:public:anon"), (&user, "db:public:user")] {
        let resp = http
            .post(format!("{}/rest/v1/rpc/send", fx.p.url))
            .header("apikey", &fx.p.anon)
            .bearer_auth(bearer)
            .json(&json!({"topic": topic, "kind": "db", "st": "service", "sid": USER_2}))
            .send()
            .await
            .expect("rpc");
        assert_eq!(
            resp.status(),
            204,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }
    // The owner (and so the server, and change capture) writes what it says.
    fx.t.owner_sql(
        &fx.p,
        "select public.send('db:public:owner', 'db', 'system', null)",
    )
    .await;
    let cfg: tokio_postgres::Config = fx.p.db_url.parse().expect("db url");
    let owner = ferrobase_server::db::connect(&cfg).await.expect("connect");
    let rows: Vec<(String, String, String, Option<String>)> = owner
        .query(
            "select topic, kind, sender_type, sender_id from realtime.messages \
             where topic like 'db:public:%' order by id",
            &[],
        )
        .await
        .expect("messages")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let row = |t: &str, k: &str, s: &str, id: Option<String>| (t.into(), k.into(), s.into(), id);
    assert_eq!(
        rows,
        vec![
            row("db:public:anon", "broadcast", "anon", None),
            row(
                "db:public:user",
                "broadcast",
                "user",
                Some(USER_1.to_string())
            ),
            row("db:public:owner", "db", "system", None),
        ]
    );
}
