//! A realtime chat room with presence between two signed-in users.
//!
//! ```sh
//! FERROBASE_URL=http://127.0.0.1:8080/p/default FERROBASE_ANON_KEY=… FERROBASE_SERVICE_ROLE_KEY=… \
//!   cargo run --manifest-path examples/Cargo.toml -p chat
//! ```
//!
//! Set-up (the service-role key): a private channel pattern `chat:%` and
//! the RLS policies that let signed-in users read and write it. Then, as an
//! app would with the anon key: Alice and Bob sign up, join a room, see each
//! other through presence and exchange messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrobase::{AdminUserAttributes, AuthClient, Client, RealtimeEvent, SignUp, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Who may read and write chat rooms: any signed-in user. (A private
/// channel is authorized by RLS on `realtime.messages`; `realtime.topic()`
/// is the channel being checked.)
const POLICIES: &str = "
drop policy if exists chat_read on realtime.messages;
create policy chat_read on realtime.messages for select to authenticated
    using (realtime.topic() like 'chat:%');
drop policy if exists chat_write on realtime.messages;
create policy chat_write on realtime.messages for insert to authenticated
    with check (realtime.topic() like 'chat:%');
";

/// How long to wait for an event before declaring the check failed.
const WAIT: Duration = Duration::from_secs(15);

/// A chat message's payload.
#[derive(Debug, Serialize, Deserialize)]
struct Chat {
    from: String,
    text: String,
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str) -> AnyResult<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/README.md)").into())
}

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

/// Signs a new user up and in; when the project requires email
/// confirmation, confirms the address with the admin API first.
async fn new_user(
    anon: &Client,
    service: &Client,
    email: &str,
    password: &str,
) -> AnyResult<AuthClient> {
    let auth = anon.auth();
    match auth.sign_up(email, password, None).await? {
        SignUp::Session(_) => {}
        SignUp::User(user) => {
            let confirm = AdminUserAttributes {
                email_confirm: Some(true),
                ..AdminUserAttributes::default()
            };
            service
                .auth()
                .admin()
                .update_user_by_id(&user.id, &confirm)
                .await?;
            auth.sign_in_with_password(email, password).await?;
        }
    }
    Ok(auth)
}

/// Skips events until `want` matches one; fails after [`WAIT`] of silence.
async fn wait_for<T>(
    sub: &mut Subscription,
    what: &str,
    mut want: impl FnMut(&RealtimeEvent) -> Option<T>,
) -> AnyResult<T> {
    loop {
        match sub.next_timeout(WAIT).await {
            Some(event) => {
                if let Some(found) = want(&event) {
                    return Ok(found);
                }
            }
            None => return Err(format!("FAILED: no {what} within {WAIT:?}").into()),
        }
    }
}

/// The next chat message on `sub` (presence events are skipped).
async fn next_chat(sub: &mut Subscription) -> AnyResult<(Chat, Option<String>)> {
    let (payload, sender) = wait_for(sub, "chat message", |e| match e {
        RealtimeEvent::Message(m) if m.event == "chat" => {
            Some((m.payload.clone(), m.meta.sender_id.clone()))
        }
        _ => None,
    })
    .await?;
    Ok((serde_json::from_value(payload)?, sender))
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let url = setting("FERROBASE_URL")?;
    let anon = Client::new(&url, setting("FERROBASE_ANON_KEY")?)?;
    let service = Client::new(&url, setting("FERROBASE_SERVICE_ROLE_KEY")?)?;

    // Set-up: the channel definition (once) and its policies.
    let admin = service.realtime_admin();
    if admin
        .list_channels()
        .await?
        .iter()
        .any(|c| c.pattern == "chat:%")
    {
        println!("channel chat:% already defined");
    } else {
        admin
            .create_channel(json!({"pattern": "chat:%", "description": "chat rooms"}))
            .await?;
        println!("defined private channel chat:%");
    }
    service.admin_sql(POLICIES, &[]).await?;

    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let room = format!("chat:lobby-{run}");
    let password = "correct horse battery staple";
    let alice = new_user(
        &anon,
        &service,
        &format!("alice-{run}@example.com"),
        password,
    )
    .await?;
    let bob = new_user(&anon, &service, &format!("bob-{run}@example.com"), password).await?;
    let alice_id = alice.get_user().await?.id;
    let bob_id = bob.get_user().await?.id;
    println!("signed up alice and bob");

    // Each connects with their own token and joins the room with a name.
    let alice_rt = alice.client().await?.realtime().await?;
    let bob_rt = bob.client().await?.realtime().await?;
    let mut alice_room = alice_rt
        .subscribe_with(&room, json!({"name": "alice"}))
        .await?;
    println!("alice joined {room}");
    let mut bob_room = bob_rt.subscribe_with(&room, json!({"name": "bob"})).await?;
    let names: Vec<String> = bob_room
        .members()
        .iter()
        .filter_map(|m| m.state["name"].as_str().map(str::to_owned))
        .collect();
    println!("bob joined {room}; members: {}", names.join(", "));
    check(
        names.contains(&"alice".to_owned()) && names.contains(&"bob".to_owned()),
        "bob sees alice and himself in the room",
    )?;
    wait_for(&mut alice_room, "presence join of bob", |e| match e {
        RealtimeEvent::PresenceJoin(m) if m.user_id.as_deref() == Some(bob_id.as_str()) => Some(()),
        _ => None,
    })
    .await?;
    check(true, "alice sees bob join")?;

    // They talk.
    alice_rt
        .publish(
            &room,
            "chat",
            Chat {
                from: "alice".into(),
                text: "hi bob!".into(),
            },
        )
        .await?;
    let (got, sender) = next_chat(&mut bob_room).await?;
    println!("bob got: <{}> {}", got.from, got.text);
    check(
        got.text == "hi bob!" && sender.as_deref() == Some(alice_id.as_str()),
        "bob receives alice's message, signed with her user id",
    )?;
    bob_rt
        .publish(
            &room,
            "chat",
            Chat {
                from: "bob".into(),
                text: "hello alice".into(),
            },
        )
        .await?;
    // Alice also receives her own message first (everyone on the channel does).
    let mut reply = None;
    for _ in 0..2 {
        let (m, sender) = next_chat(&mut alice_room).await?;
        if sender.as_deref() == Some(bob_id.as_str()) {
            reply = Some(m);
            break;
        }
    }
    let reply = reply.ok_or("FAILED: alice did not get bob's reply")?;
    println!("alice got: <{}> {}", reply.from, reply.text);
    check(reply.text == "hello alice", "alice receives bob's reply")?;

    let history = alice_rt.history(&room, None, 50).await?;
    check(
        history.iter().filter(|m| m.event == "chat").count() == 2,
        "the room's history has both messages",
    )?;

    // Bob leaves; Alice sees it.
    bob_rt.unsubscribe(&room).await?;
    wait_for(&mut alice_room, "presence leave of bob", |e| match e {
        RealtimeEvent::PresenceLeave(m) if m.user_id.as_deref() == Some(bob_id.as_str()) => {
            Some(())
        }
        _ => None,
    })
    .await?;
    check(true, "alice sees bob leave")?;

    // Without signing in, the private room is closed.
    let outsider = anon.realtime().await?;
    check(
        outsider.subscribe(&room).await.is_err(),
        "the anon key alone cannot join a private room",
    )?;

    alice_rt.close();
    bob_rt.close();
    outsider.close();
    println!("chat example finished");
    Ok(())
}
