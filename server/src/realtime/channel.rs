//! Channel and event names, parsed at the edge: after [`Channel::parse`] a
//! name is known to be printable, bounded, and either a broadcast channel or
//! a database change topic `db:{schema}:{table}[:{column}=eq.{value}]`.

use serde_json::Value;

/// Longest channel or event name (the outbox's `topic`/`event` limit).
pub const MAX_NAME: usize = 255;

/// Socket.IO's reserved event names, and our own prefixes, which a publisher
/// may not use (a client could not tell them from protocol events).
const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    "INSERT",
    "UPDATE",
    "DELETE",
];

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, too long, or contains whitespace or control characters.
    #[error("channel names are 1-255 printable characters without spaces")]
    InvalidChannel,
    /// A `db:` topic that is not `db:{schema}:{table}[:{column}=eq.{value}]`.
    #[error(
        "change channels are db:{{schema}}:{{table}} or db:{{schema}}:{{table}}:{{column}}=eq.{{value}}"
    )]
    InvalidChangeTopic,
    /// Empty, too long, reserved or with control characters.
    #[error(
        "event names are 1-255 characters, not reserved (connect, disconnect, realtime:*, presence:*, INSERT/UPDATE/DELETE)"
    )]
    InvalidEvent,
}

/// A filter on a change topic: only rows whose `column` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeFilter {
    /// Column name.
    pub column: String,
    /// The value, compared with the column's JSON value rendered as text.
    pub value: String,
}

impl ChangeFilter {
    /// Whether a change's row (record, or old_record for deletes) passes.
    pub fn matches(&self, row: &Value) -> bool {
        match row.get(&self.column) {
            Some(Value::String(s)) => *s == self.value,
            Some(Value::Null) | None => false,
            Some(other) => {
                let rendered = other.to_string();
                rendered == self.value
            }
        }
    }
}

/// A parsed channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// A broadcast channel (authorized by the channel table and RLS).
    Broadcast(String),
    /// Database changes of one table.
    Changes {
        /// The full name as subscribed (with the filter, if any).
        name: String,
        /// Schema.
        schema: String,
        /// Table.
        table: String,
        /// Optional row filter.
        filter: Option<ChangeFilter>,
    },
}

fn printable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

fn identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-')
}

impl Channel {
    /// Parses a name sent by a client.
    pub fn parse(name: &str) -> Result<Channel, NameError> {
        if !printable(name) {
            return Err(NameError::InvalidChannel);
        }
        let Some(rest) = name.strip_prefix("db:") else {
            return Ok(Channel::Broadcast(name.to_owned()));
        };
        let mut parts = rest.splitn(3, ':');
        let schema = parts.next().unwrap_or_default();
        let table = parts.next().unwrap_or_default();
        if !identifier(schema) || !identifier(table) {
            return Err(NameError::InvalidChangeTopic);
        }
        let filter = match parts.next() {
            None => None,
            Some(f) => {
                let (column, value) = f.split_once("=eq.").ok_or(NameError::InvalidChangeTopic)?;
                if !identifier(column) {
                    return Err(NameError::InvalidChangeTopic);
                }
                Some(ChangeFilter {
                    column: column.to_owned(),
                    value: value.to_owned(),
                })
            }
        };
        Ok(Channel::Changes {
            name: name.to_owned(),
            schema: schema.to_owned(),
            table: table.to_owned(),
            filter,
        })
    }

    /// The name as subscribed.
    pub fn name(&self) -> &str {
        match self {
            Channel::Broadcast(n) => n,
            Channel::Changes { name, .. } => name,
        }
    }

    /// The outbox topic the channel's messages carry (`db:{schema}:{table}`
    /// for change channels, without the filter).
    pub fn topic(&self) -> String {
        match self {
            Channel::Broadcast(n) => n.clone(),
            Channel::Changes { schema, table, .. } => format!("db:{schema}:{table}"),
        }
    }
}

/// Checks an event name chosen by a publisher.
pub fn check_event(event: &str) -> Result<(), NameError> {
    let ok = printable_event(event)
        && !RESERVED_EVENTS.contains(&event)
        && !event.starts_with("realtime:")
        && !event.starts_with("presence:");
    if ok {
        Ok(())
    } else {
        Err(NameError::InvalidEvent)
    }
}

fn printable_event(event: &str) -> bool {
    !event.is_empty() && event.len() <= MAX_NAME && !event.chars().any(char::is_control)
}

/// Checks a channel pattern given by the admin (LIKE syntax, same characters
/// as channel names, not a change topic).
pub fn check_pattern(pattern: &str) -> Result<(), NameError> {
    if printable(pattern) && !pattern.starts_with("db:") {
        Ok(())
    } else {
        Err(NameError::InvalidChannel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn broadcast_names() {
        assert_eq!(
            Channel::parse("room:1"),
            Ok(Channel::Broadcast("room:1".into()))
        );
        for bad in ["", "a b", "x\ny", &"x".repeat(256)] {
            assert_eq!(
                Channel::parse(bad),
                Err(NameError::InvalidChannel),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn change_topics() {
        let c = Channel::parse("db:public:todos:owner=eq.abc").expect("parses");
        assert_eq!(c.topic(), "db:public:todos");
        let Channel::Changes { filter, .. } = &c else {
            panic!("not a change topic")
        };
        let f = filter.clone().expect("filter");
        assert!(f.matches(&json!({"owner": "abc"})));
        assert!(!f.matches(&json!({"owner": "abd"})));
        let n = Channel::parse("db:public:todos:id=eq.5").expect("parses");
        let Channel::Changes {
            filter: Some(f), ..
        } = n
        else {
            panic!("no filter")
        };
        assert!(f.matches(&json!({"id": 5})));
        for bad in [
            "db:",
            "db:public",
            "db:public:",
            "db:pub\"lic:t",
            "db:p:t:x=gt.1",
        ] {
            assert_eq!(
                Channel::parse(bad),
                Err(NameError::InvalidChangeTopic),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn events() {
        assert!(check_event("message").is_ok());
        assert!(check_event("chat message").is_ok());
        for bad in [
            "",
            "connect",
            "realtime:subscribe",
            "presence:join",
            "INSERT",
            "a\u{0}",
        ] {
            assert!(check_event(bad).is_err(), "{bad:?}");
        }
    }
}
