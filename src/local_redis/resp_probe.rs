//! A tiny blocking client for readiness checks (`PING`, `CLUSTER INFO`, `INFO`, ...).
//!
//! Owns: one short-lived `TcpStream` to a local server, with a timeout on every operation.
//! Encoding and parsing are the proxy's own codec ([`crate::resp`]); this module only adds the
//! blocking socket the launcher needs outside any async runtime.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::resp::{parse_frame, Frame, Limits, ReplyDecoder, Request};

/// A blocking connection to 127.0.0.1:`port`.
pub(crate) struct Probe {
    stream: TcpStream,
    buf: BytesMut,
    decoder: ReplyDecoder,
}

impl Probe {
    /// Connects with `timeout` on the connect and on every later read and write, and sends
    /// `AUTH password` first when the server has one.
    pub(crate) fn connect(
        port: u16,
        timeout: Duration,
        password: Option<&str>,
    ) -> io::Result<Probe> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut probe = Probe {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            decoder: ReplyDecoder::new(Limits::default()),
        };
        if let Some(password) = password {
            probe.call_text(&["AUTH", password])?;
        }
        Ok(probe)
    }

    /// Sends one command and reads its reply. A server error is `Ok(Frame::Error(..))`.
    pub(crate) fn call(&mut self, args: &[&str]) -> io::Result<Frame> {
        let request = Request::from_args(args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())));
        self.stream.write_all(request.raw())?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(reply) = self.decoder.decode(&mut self.buf).map_err(bad_data)? {
                return parse_frame(reply.raw(), &Limits::default()).map_err(bad_data);
            }
            match self.stream.read(&mut chunk)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-reply",
                    ))
                }
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Like [`Probe::call`], but a server error or a non-string reply becomes an `io::Error`.
    pub(crate) fn call_text(&mut self, args: &[&str]) -> io::Result<String> {
        match self.call(args)? {
            Frame::Error(e) => Err(io::Error::other(format!(
                "{}: -{}",
                args.join(" "),
                String::from_utf8_lossy(&e)
            ))),
            other => match other.as_bytes() {
                Some(text) => Ok(String::from_utf8_lossy(text).into_owned()),
                None => Err(io::Error::other(format!(
                    "{}: unexpected reply {other:?}",
                    args.join(" ")
                ))),
            },
        }
    }
}

/// One-shot helper: connect (and authenticate with `password`), send one command, return
/// its text reply.
pub(crate) fn query_text(
    port: u16,
    args: &[&str],
    timeout: Duration,
    password: Option<&str>,
) -> io::Result<String> {
    Probe::connect(port, timeout, password)?.call_text(args)
}

fn bad_data(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}
