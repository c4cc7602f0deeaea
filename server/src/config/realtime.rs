//! Settings of the realtime hub (a group flattened into [`super::Config`]).

use clap::Args;

/// Realtime settings, from `FERROBASE_REALTIME_*` environment variables.
#[derive(Debug, Clone, Args)]
pub struct RealtimeConfig {
    /// Largest message payload a client may publish, in bytes (JSON-encoded).
    /// Larger ones are refused with `realtime:error` (`payload_too_large`).
    #[arg(long, env = "FERROBASE_REALTIME_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub realtime_max_message_bytes: usize,

    /// Seconds after which a presence member whose node stopped refreshing it
    /// (dead socket or dead node) is removed and `presence:leave` is sent.
    #[arg(
        long,
        env = "FERROBASE_REALTIME_PRESENCE_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub realtime_presence_timeout_secs: u64,

    /// Milliseconds between safety reads of the outbox when no NOTIFY came
    /// (a lost notification delays a message by at most this), and between
    /// token-expiry checks.
    #[arg(long, env = "FERROBASE_REALTIME_POLL_MS", default_value_t = 1000)]
    pub realtime_poll_ms: u64,

    /// Engine.IO ping interval in milliseconds (a dead client is detected
    /// after this plus the ping timeout).
    #[arg(
        long,
        env = "FERROBASE_REALTIME_PING_INTERVAL_MS",
        default_value_t = 25_000
    )]
    pub realtime_ping_interval_ms: u64,

    /// Channels (broadcast and `db:` change channels together) one socket may
    /// have joined at once; a further `realtime:subscribe` is refused with
    /// `too_many_channels` until it unsubscribes from one.
    #[arg(
        long,
        env = "FERROBASE_REALTIME_MAX_CHANNELS_PER_SOCKET",
        default_value_t = 100
    )]
    pub realtime_max_channels_per_socket: usize,

    /// Sustained rate of database-touching events one socket may send
    /// (`realtime:subscribe`, `realtime:publish`, `presence:update`,
    /// `realtime:history`, `realtime:auth`), per second. Over it an event is
    /// refused with `rate_limited` (and nothing is written).
    #[arg(
        long,
        env = "FERROBASE_REALTIME_MAX_EVENTS_PER_SEC",
        default_value_t = 50
    )]
    pub realtime_max_events_per_sec: u32,

    /// Events a socket may send at once above the sustained rate (the token
    /// bucket's size): enough for a client to join its channels on connect.
    #[arg(long, env = "FERROBASE_REALTIME_EVENT_BURST", default_value_t = 100)]
    pub realtime_event_burst: u32,

    /// Sustained rate of database-touching events per project and node, all
    /// its sockets and `POST /realtime/v1/messages` together, per second.
    /// Over it an event is refused with `rate_limited` (HTTP 429 with
    /// `Retry-After`), so many sockets cannot add up to any write rate.
    #[arg(
        long,
        env = "FERROBASE_REALTIME_MAX_PROJECT_EVENTS_PER_SEC",
        default_value_t = 1000
    )]
    pub realtime_max_project_events_per_sec: u32,

    /// Events a project may send at once above its sustained rate.
    #[arg(
        long,
        env = "FERROBASE_REALTIME_PROJECT_EVENT_BURST",
        default_value_t = 5000
    )]
    pub realtime_project_event_burst: u32,

    /// Sockets of one project connected to one node at once; a further
    /// connection is refused at the handshake (`connect_error`
    /// `too_many_sockets`). The limit across a cluster is this times the
    /// number of nodes.
    #[arg(
        long,
        env = "FERROBASE_REALTIME_MAX_SOCKETS_PER_PROJECT",
        default_value_t = 10_000
    )]
    pub realtime_max_sockets_per_project: usize,
}

impl RealtimeConfig {
    /// Short intervals for tests.
    pub fn for_tests() -> Self {
        Self {
            realtime_max_message_bytes: 64 * 1024,
            realtime_presence_timeout_secs: 3,
            realtime_poll_ms: 200,
            realtime_ping_interval_ms: 2_000,
            ..Self::default()
        }
    }
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            realtime_max_message_bytes: 64 * 1024,
            realtime_presence_timeout_secs: 30,
            realtime_poll_ms: 1000,
            realtime_ping_interval_ms: 25_000,
            realtime_max_channels_per_socket: 100,
            realtime_max_events_per_sec: 50,
            realtime_event_burst: 100,
            realtime_max_project_events_per_sec: 1000,
            realtime_project_event_burst: 5000,
            realtime_max_sockets_per_project: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::RealtimeConfig;

    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        realtime: RealtimeConfig,
    }

    #[test]
    fn realtime_defaults_match_the_documented_ones() {
        let parsed = Only::try_parse_from(["ferrobase"]).expect("parses with defaults");
        let c = parsed.realtime;
        let d = RealtimeConfig::default();
        assert_eq!(c.realtime_max_channels_per_socket, 100);
        assert_eq!(c.realtime_max_events_per_sec, 50);
        assert_eq!(c.realtime_event_burst, 100);
        assert_eq!(c.realtime_max_sockets_per_project, 10_000);
        assert_eq!(c.realtime_max_project_events_per_sec, 1000);
        assert_eq!(c.realtime_project_event_burst, 5000);
        assert_eq!(
            (
                c.realtime_max_channels_per_socket,
                c.realtime_max_events_per_sec,
                c.realtime_event_burst,
                c.realtime_max_sockets_per_project,
                c.realtime_max_project_events_per_sec,
                c.realtime_project_event_burst,
            ),
            (
                d.realtime_max_channels_per_socket,
                d.realtime_max_events_per_sec,
                d.realtime_event_burst,
                d.realtime_max_sockets_per_project,
                d.realtime_max_project_events_per_sec,
                d.realtime_project_event_burst,
            )
        );
    }

    #[test]
    fn limits_parse_as_numbers_only() {
        let parsed = Only::try_parse_from([
            "ferrobase",
            "--realtime-max-channels-per-socket",
            "3",
            "--realtime-max-events-per-sec",
            "7",
            "--realtime-event-burst",
            "9",
            "--realtime-max-sockets-per-project",
            "11",
        ])
        .expect("parses");
        let c = parsed.realtime;
        assert_eq!(c.realtime_max_channels_per_socket, 3);
        assert_eq!(c.realtime_max_events_per_sec, 7);
        assert_eq!(c.realtime_event_burst, 9);
        assert_eq!(c.realtime_max_sockets_per_project, 11);
        assert!(
            Only::try_parse_from(["ferrobase", "--realtime-max-events-per-sec", "-1"]).is_err()
        );
    }
}
