//! A short-lived connection to a node, for control traffic (topology discovery, health
//! checks, admin probes, Sentinel look-ups), never for client requests: connect, send a few
//! commands in one write (after `AUTH` when the node needs credentials), read their replies,
//! close.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::resp::{parse_frame, Frame, Limits, Request};
use crate::tls::BackendTls;

use super::connect::{self, Handshake};
use super::credentials::Credentials;
use super::BackendError;

/// Send `commands` to `addr` in one write and return their parsed replies, in order. The
/// whole exchange, connect (and TLS handshake, with `tls`) included, is bounded by `timeout`.
/// With `auth`, `AUTH` leads the write; a refusal is [`BackendError::Auth`] with the node's
/// error line, and the other replies (`NOAUTH`) are not read.
pub async fn commands(
    addr: &str,
    auth: Option<&Arc<Credentials>>,
    commands: &[&[&str]],
    timeout: Duration,
    limits: Limits,
    tls: Option<&BackendTls>,
) -> Result<Vec<Frame>, BackendError> {
    let handshake = Handshake {
        auth: auth.cloned(),
        ..Handshake::default()
    };
    let mut requests = BytesMut::new();
    for args in commands {
        let request = Request::from_args(args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())));
        requests.extend_from_slice(request.raw());
    }
    let exchange = async {
        let mut stream = connect::connect(addr, tls, timeout).await?;
        connect::exchange(
            &mut stream,
            addr,
            &handshake,
            &requests,
            commands.len(),
            limits,
        )
        .await
    };
    let replies = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(connect::no_reply(addr, timeout)))?;
    replies
        .iter()
        .map(|reply| {
            parse_frame(reply.raw(), &limits).map_err(|source| BackendError::Protocol {
                addr: addr.to_string(),
                source,
            })
        })
        .collect()
}
