//! A short-lived connection to a node, for control traffic (topology discovery), never for
//! client requests: connect, send a few commands in one write (after `AUTH` when the node
//! needs credentials), read their replies, close.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::resp::{parse_frame, Frame, Limits, ReplyDecoder, Request};
use crate::tls::{self, BackendTls};

use super::auth::Credentials;
use super::BackendError;

/// Send `commands` to `addr` in one write and return their parsed replies, in order. The
/// whole exchange, connect (and TLS handshake, with `tls`) included, is bounded by `timeout`.
/// With `auth`, `AUTH` leads the write; a refusal is [`BackendError::Auth`] with the node's
/// error line, and the other replies (`NOAUTH`) are not read.
pub async fn commands(
    addr: &str,
    auth: Option<&Credentials>,
    commands: &[&[&str]],
    timeout: Duration,
    limits: Limits,
    tls: Option<&BackendTls>,
) -> Result<Vec<Frame>, BackendError> {
    let timed_out = || BackendError::Timeout {
        addr: addr.to_string(),
        ms: timeout.as_millis() as u64,
    };
    tokio::time::timeout(timeout, exchange(addr, auth, commands, limits, tls))
        .await
        .map_err(|_| timed_out())?
}

async fn exchange(
    addr: &str,
    auth: Option<&Credentials>,
    commands: &[&[&str]],
    limits: Limits,
    tls: Option<&BackendTls>,
) -> Result<Vec<Frame>, BackendError> {
    let lost = |e: std::io::Error| BackendError::Lost {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let mut stream = tls::connect(addr, tls).await?;
    let mut out = BytesMut::new();
    if let Some(auth) = auth {
        out.extend_from_slice(&auth.auth_request());
    }
    for args in commands {
        let request = Request::from_args(
            args.iter()
                .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes())),
        );
        out.extend_from_slice(request.raw());
    }
    stream.write_all(&out).await.map_err(lost)?;
    stream.flush().await.map_err(lost)?;
    let mut decoder = ReplyDecoder::new(limits);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut replies = Vec::with_capacity(commands.len());
    let mut auth_pending = auth.is_some();
    loop {
        let protocol = |source| BackendError::Protocol {
            addr: addr.to_string(),
            source,
        };
        while let Some(reply) = decoder.decode(&mut buf).map_err(protocol)? {
            if std::mem::take(&mut auth_pending) {
                if let Some(message) = reply.error_message() {
                    return Err(BackendError::Auth {
                        addr: addr.to_string(),
                        reason: String::from_utf8_lossy(message).into_owned(),
                    });
                }
                continue;
            }
            replies.push(parse_frame(reply.raw(), &limits).map_err(protocol)?);
            if replies.len() == commands.len() {
                return Ok(replies);
            }
        }
        if stream.read_buf(&mut buf).await.map_err(lost)? == 0 {
            return Err(BackendError::Lost {
                addr: addr.to_string(),
                reason: "closed before replying".into(),
            });
        }
    }
}
