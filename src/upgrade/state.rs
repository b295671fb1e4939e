//! What the two processes say on the upgrade socket, and a session's state: serde structs
//! encoded as JSON (one frame body each, see `wire`). Versioned by [`VERSION`] in `Hello` and
//! `Listeners`: a successor speaking another version is refused before anything is handed
//! over. Fields added later default when absent (`#[serde(default)]`), so a newer successor
//! reads an older state.

use serde::{Deserialize, Serialize};

/// The protocol version both sides must speak.
pub const VERSION: u32 = 1;

/// One message on the upgrade socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// New → old, first: the successor has started up and asks for the listeners.
    Hello {
        /// [`VERSION`] of the successor.
        version: u32,
        /// Its process id (for the log).
        pid: u32,
    },
    /// Old → new: the listening sockets, as descriptors in this order: plaintext, TLS,
    /// admin (each only when present).
    Listeners {
        /// [`VERSION`] of the old process.
        version: u32,
        /// Address of the plaintext listener, when there is one.
        plain: Option<String>,
        /// Address of the TLS listener, when there is one.
        tls: Option<String>,
        /// Address of the admin HTTP listener, when there is one.
        #[serde(default)]
        admin: Option<String>,
    },
    /// Old → new: no hand-over (a hand-over already under way, another version).
    Refused {
        /// Why.
        reason: String,
    },
    /// New → old: serving on the listeners (and pid file written): stop accepting and hand
    /// over the clients.
    Ready,
    /// Old → new: a client connection (one descriptor) and its session.
    Session {
        /// Names it in `Subscribed` / `Released`.
        token: u64,
        /// The session.
        state: SessionState,
    },
    /// New → old: the subscriber `token`'s subscriptions are made in the new process.
    Subscribed {
        /// The session's token.
        token: u64,
    },
    /// Old → new: the subscriber `token` forwarded its last message: the new one may write.
    Released {
        /// The session's token.
        token: u64,
    },
    /// Old → new, last: every client was handed over or closed; the old process exits.
    Done {
        /// Sessions handed over.
        handed: u64,
        /// Sessions closed instead (they could not move in time, TLS) or gone meanwhile.
        closed: u64,
    },
}

impl Message {
    /// The frame body.
    pub fn encode(&self) -> Vec<u8> {
        // A derived Serialize of strings, numbers and byte vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A frame body back; the error says what was wrong.
    pub fn decode(body: &[u8]) -> Result<Message, String> {
        serde_json::from_slice(body).map_err(|e| format!("bad upgrade message: {e}"))
    }
}

/// A client session's state, as it moves to the successor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionState {
    /// The client may run commands (AUTH or HELLO AUTH done, or no authentication).
    pub authenticated: bool,
    /// The named user it authenticated as (`None`: the default user). A user the new
    /// configuration no longer has leaves the client unauthenticated.
    pub user: Option<String>,
    /// CLIENT SETNAME / HELLO SETNAME.
    pub name: Option<Vec<u8>>,
    /// `HELLO 3` was sent.
    pub resp3: bool,
    /// The selected database.
    pub db: u32,
    /// SUBSCRIBE channels.
    pub channels: Vec<Vec<u8>>,
    /// PSUBSCRIBE patterns.
    pub patterns: Vec<Vec<u8>>,
    /// SSUBSCRIBE shard channels.
    pub shard_channels: Vec<Vec<u8>>,
    /// Bytes read from the client but not yet a whole request (the start of the next one).
    pub unread: Vec<u8>,
    /// The routing units (hash slots, or pools in ketama mode) of the client's last write,
    /// for a WAIT after the move.
    pub last_write: Vec<u16>,
}

impl SessionState {
    /// True when the session has a subscription (it moves in two steps).
    pub fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_encoding() {
        let state = SessionState {
            authenticated: true,
            user: Some("app".into()),
            name: Some(b"worker \xff".to_vec()),
            resp3: true,
            db: 3,
            channels: vec![b"news".to_vec()],
            patterns: vec![b"n*".to_vec()],
            shard_channels: vec![b"{a}s".to_vec()],
            unread: b"*2\r\n$3\r\nGET\r\n$1\r".to_vec(),
            last_write: vec![866, 12],
        };
        for message in [
            Message::Hello {
                version: VERSION,
                pid: 7,
            },
            Message::Listeners {
                version: VERSION,
                plain: Some("127.0.0.1:6380".into()),
                tls: None,
                admin: Some("127.0.0.1:9180".into()),
            },
            Message::Refused {
                reason: "busy".into(),
            },
            Message::Ready,
            Message::Session { token: 9, state },
            Message::Subscribed { token: 9 },
            Message::Released { token: 9 },
            Message::Done {
                handed: 4,
                closed: 1,
            },
        ] {
            assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn the_encoding_is_documented_json_and_missing_fields_default() {
        let ready = String::from_utf8(Message::Ready.encode()).unwrap();
        assert_eq!(ready, r#"{"type":"ready"}"#);
        let older = br#"{"type":"session","token":1,"state":{"db":2}}"#;
        let Ok(Message::Session { token: 1, state }) = Message::decode(older) else {
            panic!("not decoded");
        };
        assert_eq!(state.db, 2);
        assert!(!state.subscribed() && !state.authenticated && state.unread.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Message::decode(b"{").is_err());
        assert!(Message::decode(br#"{"type":"launch"}"#).is_err());
    }
}
