//! A one-request connection to a node, for control traffic (topology discovery), never for
//! client requests: connect, send one command, read one reply, close.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{parse_frame, Frame, Limits, ReplyDecoder, Request};

use super::BackendError;

/// Send `args` to `addr` and return the parsed reply. The whole exchange, connect included,
/// is bounded by `timeout`.
pub async fn command(
    addr: &str,
    args: &[&str],
    timeout: Duration,
    limits: Limits,
) -> Result<Frame, BackendError> {
    let timed_out = || BackendError::Timeout {
        addr: addr.to_string(),
        ms: timeout.as_millis() as u64,
    };
    tokio::time::timeout(timeout, exchange(addr, args, limits))
        .await
        .map_err(|_| timed_out())?
}

async fn exchange(addr: &str, args: &[&str], limits: Limits) -> Result<Frame, BackendError> {
    let lost = |e: std::io::Error| BackendError::Lost {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| BackendError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    let request = Request::from_args(
        args.iter()
            .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes())),
    );
    stream.write_all(request.raw()).await.map_err(lost)?;
    let mut decoder = ReplyDecoder::new(limits);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let protocol = |source| BackendError::Protocol {
            addr: addr.to_string(),
            source,
        };
        if let Some(reply) = decoder.decode(&mut buf).map_err(protocol)? {
            return parse_frame(reply.raw(), &limits).map_err(protocol);
        }
        if stream.read_buf(&mut buf).await.map_err(lost)? == 0 {
            return Err(BackendError::Lost {
                addr: addr.to_string(),
                reason: "closed before replying".into(),
            });
        }
    }
}
