//! The audit trail: one structured `tracing` event per security-relevant
//! operation, under the target `tessera::audit`.
//!
//! Every event has a stable `event` name, the client's address (`ip`) and
//! user agent (`-` when there is none, as for a command), and the ids of what
//! it concerns (`user_id`, `session_id`, …) — never a password, secret, token
//! or key, and never the username a client typed (people type passwords into
//! username fields). Events are at `info`, except a reused refresh token
//! (theft, or a broken client) at `warn`. docs/api.md lists them.

/// Writes one audit event: `audit!(info, "logout", client, user_id = id)`.
/// Field values are anything `tracing` records as a value (`&str`, numbers).
macro_rules! audit {
    ($level:ident, $event:literal, $client:expr $(, $key:ident = $value:expr)* $(,)?) => {
        tracing::$level!(
            target: "tessera::audit",
            event = $event,
            ip = $client.ip.as_deref().unwrap_or("-"),
            user_agent = $client.user_agent.as_deref().unwrap_or("-"),
            $($key = $value,)*
            $event
        )
    };
}

pub(crate) use audit;
