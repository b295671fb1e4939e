//! Errors on the backend side of the proxy, each with a stable kind and a client-facing reply.

use bytes::Bytes;

use crate::resp::ParseError;

/// A backend node failed to serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The TCP connection could not be established.
    #[error("backend {addr} is unreachable ({reason})")]
    Connect {
        /// The node.
        addr: String,
        /// The OS error, as text.
        reason: String,
    },
    /// The node's host name did not resolve (or resolved to no address). Tried again on the
    /// next connect: a name that comes (back) into DNS is followed.
    #[error("backend {addr} does not resolve ({reason})")]
    Resolve {
        /// The node (`HOST:PORT`).
        addr: String,
        /// What the resolver said.
        reason: String,
    },
    /// Connecting took longer than `backend.connect_timeout_ms`.
    #[error("backend {addr} did not accept a connection within {ms} ms")]
    ConnectTimeout {
        /// The node.
        addr: String,
        /// The configured limit.
        ms: u64,
    },
    /// The TLS handshake with the node failed (certificate not trusted, wrong name …).
    #[error("TLS with backend {addr} failed ({reason})")]
    Tls {
        /// The node.
        addr: String,
        /// What rustls reported.
        reason: String,
    },
    /// The node did not answer within `backend.request_timeout_ms`.
    #[error("backend {addr} did not answer within {ms} ms")]
    Timeout {
        /// The node.
        addr: String,
        /// The configured limit.
        ms: u64,
    },
    /// A script ran past `backend.request_timeout_ms` and the node would not kill it
    /// (`backend.kill_slow_scripts`): UNKILLABLE, it wrote.
    #[error(
        "script on backend {addr} ran past {ms} ms and could not be killed ({reason}); the node \
         answers BUSY until the script ends"
    )]
    ScriptUnkillable {
        /// The node.
        addr: String,
        /// The configured limit.
        ms: u64,
        /// The node's refusal, or why it could not be asked.
        reason: String,
    },
    /// The connection was closed or broke before the reply arrived.
    #[error("connection to backend {addr} lost ({reason})")]
    Lost {
        /// The node.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The node sent bytes that are not valid RESP.
    #[error("backend {addr} sent an invalid reply ({0})", .source)]
    Protocol {
        /// The node.
        addr: String,
        /// The parse failure.
        source: ParseError,
    },
    /// The node refused the configured credentials (the reason is the node's error line;
    /// the password is never part of it).
    #[error("backend {addr} refused authentication ({reason})")]
    Auth {
        /// The node.
        addr: String,
        /// The node's reply.
        reason: String,
    },
    /// The node refused a command the proxy sends on each new connection (`READONLY`).
    #[error("backend {addr} refused {command} ({reason})")]
    Refused {
        /// The node.
        addr: String,
        /// The command.
        command: &'static str,
        /// The node's reply.
        reason: String,
    },
    /// No node serves the request's slot.
    #[error("hash slot {0} is not served by any node")]
    SlotUnserved(u16),
    /// `read_policy = "replica"` and no replica of the slot's shard is healthy.
    #[error("no healthy replica serves hash slot {0} (read_policy = \"replica\")")]
    NoReplica(u16),
}

impl BackendError {
    /// A stable short label, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Connect { .. } => "connect",
            BackendError::Resolve { .. } => "resolve",
            BackendError::ConnectTimeout { .. } => "connect_timeout",
            BackendError::Tls { .. } => "tls",
            BackendError::Timeout { .. } => "timeout",
            BackendError::ScriptUnkillable { .. } => "script_unkillable",
            BackendError::Lost { .. } => "lost",
            BackendError::Protocol { .. } => "protocol",
            BackendError::Auth { .. } => "auth",
            BackendError::Refused { .. } => "refused",
            BackendError::SlotUnserved(_) => "slot_unserved",
            BackendError::NoReplica(_) => "no_replica",
        }
    }

    /// The RESP error reply a client gets for a request that failed this way.
    pub fn to_reply(&self) -> Bytes {
        let text = match self {
            // Same code and wording a cluster node uses for a slot nobody serves.
            BackendError::SlotUnserved(_) => format!("-CLUSTERDOWN {self}\r\n"),
            _ => format!("-ERR slotgate: {self}\r\n"),
        };
        Bytes::from(text.replace(['\r', '\n'], " ").trim_end().to_string() + "\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_single_line_errors() {
        let e = BackendError::Lost {
            addr: "127.0.0.1:7000".into(),
            reason: "reset\r\nby peer".into(),
        };
        let reply = e.to_reply();
        assert!(reply.starts_with(b"-ERR slotgate: connection to backend 127.0.0.1:7000 lost"));
        assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(BackendError::SlotUnserved(5)
            .to_reply()
            .starts_with(b"-CLUSTERDOWN"));
    }
}
