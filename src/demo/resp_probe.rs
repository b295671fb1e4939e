//! A tiny blocking RESP2 client for readiness checks (`PING`, `CLUSTER INFO`, `INFO`, ...).
//!
//! Owns: one short-lived `TcpStream` to a local server, with a timeout on every operation.
//! Does not own: anything the proxy uses; the real codec lives in `crate::resp`. This is kept
//! separate on purpose so the launcher can probe servers even when the codec is being changed.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Largest bulk string we accept (`CLUSTER NODES` of a big cluster is well below this).
const MAX_BULK: usize = 16 * 1024 * 1024;
/// Largest array we accept.
const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting we accept (`CLUSTER SLOTS` nests three levels).
const MAX_DEPTH: usize = 8;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` followed by n bytes.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n` followed by n replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a bulk or simple string (lossy UTF-8), `None` for other kinds.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(n) => write!(f, ":{n}"),
            Reply::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Nil => f.write_str("(nil)"),
            Reply::Array(items) => write!(f, "[{} items]", items.len()),
        }
    }
}

/// A blocking connection to 127.0.0.1:`port`.
pub(crate) struct Probe {
    reader: BufReader<TcpStream>,
}

impl Probe {
    /// Connects with `timeout` on the connect and on every later read and write.
    pub(crate) fn connect(port: u16, timeout: Duration) -> io::Result<Probe> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Probe {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply. A server error is `Ok(Reply::Error(..))`.
    pub(crate) fn call(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        read_reply(&mut self.reader, 0)
    }

    /// Like [`Probe::call`], but a server error or a non-string reply becomes an `io::Error`.
    pub(crate) fn call_text(&mut self, args: &[&str]) -> io::Result<String> {
        match self.call(args)? {
            Reply::Error(e) => Err(io::Error::other(format!("{}: -{e}", args.join(" ")))),
            other => other.text().ok_or_else(|| {
                io::Error::other(format!("{}: unexpected reply {other}", args.join(" ")))
            }),
        }
    }
}

/// One-shot helper: connect, send one command, return its text reply.
pub(crate) fn query_text(port: u16, args: &[&str], timeout: Duration) -> io::Result<String> {
    Probe::connect(port, timeout)?.call_text(args)
}

/// The `field:value` lines of an `INFO`-style reply (`CLUSTER INFO`, `INFO replication`).
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == field).then_some(v.trim())
    })
}

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one line without its `\r\n`.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-reply",
        ));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| bad_data("reply line is not UTF-8"))
}

fn parse_len(s: &str) -> io::Result<i64> {
    s.parse()
        .map_err(|_| bad_data(format!("bad length or integer {s:?}")))
}

/// Reads one complete reply; `depth` bounds nesting.
fn read_reply(r: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad_data("reply nested too deeply"));
    }
    let line = read_line(r)?;
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Int(parse_len(rest)?)),
        "$" => {
            let Ok(len) = usize::try_from(parse_len(rest)?) else {
                return Ok(Reply::Nil);
            };
            if len > MAX_BULK {
                return Err(bad_data(format!("bulk string of {len} bytes is too large")));
            }
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(bad_data("bulk string not terminated by CRLF"));
            }
            buf.truncate(len);
            Ok(Reply::Bulk(buf))
        }
        "*" => {
            let Ok(len) = usize::try_from(parse_len(rest)?) else {
                return Ok(Reply::Nil);
            };
            if len > MAX_ARRAY {
                return Err(bad_data(format!("array of {len} items is too large")));
            }
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_reply(r, depth + 1)?);
            }
            Ok(Reply::Array(items))
        }
        _ => Err(bad_data(format!("unexpected reply line {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut BufReader::new(bytes), 0)
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Reply::Simple("PONG".into()));
        assert_eq!(parse(b"-ERR x\r\n").unwrap(), Reply::Error("ERR x".into()));
        assert_eq!(parse(b":-3\r\n").unwrap(), Reply::Int(-3));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(
            parse(b"$3\r\na\r\n\r\n").unwrap(),
            Reply::Bulk(b"a\r\n".to_vec())
        );
        assert_eq!(
            parse(b"*2\r\n:1\r\n*1\r\n$0\r\n\r\n").unwrap(),
            Reply::Array(vec![Reply::Int(1), Reply::Array(vec![Reply::Bulk(vec![])])])
        );
    }

    #[test]
    fn rejects_truncated_and_malformed() {
        assert!(parse(b"+PONG").is_err());
        assert!(parse(b"$5\r\nab\r\n").is_err());
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b"\r\n").is_err());
        assert!(parse(b"*1\r\n").is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn finds_info_fields() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_known_nodes:6\r\n";
        assert_eq!(info_field(info, "cluster_state"), Some("ok"));
        assert_eq!(info_field(info, "cluster_known_nodes"), Some("6"));
        assert_eq!(info_field(info, "missing"), None);
    }
}
