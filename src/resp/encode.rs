//! Encoders: append one RESP2 value to an output buffer.
//!
//! Used to build the replies the proxy answers itself and the sub-requests it splits off.
//! Forwarded traffic is never re-encoded; it travels as the raw bytes it arrived as.

use bytes::{BufMut, BytesMut};

/// Appends a status reply `+{s}\r\n`. CR and LF in `s` become spaces: a status is one line.
pub fn simple(out: &mut BytesMut, s: &str) {
    one_line(out, b'+', s.as_bytes());
}

/// An array of status lines, the shape of Redis' `… HELP` replies.
pub fn help(lines: &[&str]) -> bytes::Bytes {
    let mut out = BytesMut::new();
    array_header(&mut out, lines.len());
    for line in lines {
        simple(&mut out, line);
    }
    out.freeze()
}

/// Appends an error reply `-{msg}\r\n`, e.g. `error(out, "ERR unknown command")`. CR and LF in
/// `msg` become spaces: an error is one line.
pub fn error(out: &mut BytesMut, msg: &str) {
    one_line(out, b'-', msg.as_bytes());
}

/// Appends an integer reply `:{n}\r\n`.
pub fn integer(out: &mut BytesMut, n: i64) {
    out.reserve(1 + MAX_DECIMAL + 2);
    out.put_u8(b':');
    put_i64(out, n);
    out.put_slice(b"\r\n");
}

/// Appends a bulk string `${len}\r\n{b}\r\n`. Binary safe.
pub fn bulk(out: &mut BytesMut, b: &[u8]) {
    out.reserve(bulk_len(b.len()));
    header(out, b'$', b.len());
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Appends the null bulk string `$-1\r\n`.
pub fn null_bulk(out: &mut BytesMut) {
    out.put_slice(b"$-1\r\n");
}

/// Appends an array header `*{n}\r\n`; the caller then appends the `n` elements.
pub fn array_header(out: &mut BytesMut, n: usize) {
    header(out, b'*', n);
}

/// Appends a RESP3 set header `~{n}\r\n`; the caller then appends the `n` members.
pub fn set_header(out: &mut BytesMut, n: usize) {
    header(out, b'~', n);
}

/// Appends a RESP3 map header `%{n}\r\n`; the caller then appends `n` keys and values.
pub fn map_header(out: &mut BytesMut, n: usize) {
    header(out, b'%', n);
}

/// Appends the null array `*-1\r\n`.
pub fn null_array(out: &mut BytesMut) {
    out.put_slice(b"*-1\r\n");
}

/// Longest decimal rendering of an `i64` or `u64` (`-9223372036854775808` is 20 bytes).
const MAX_DECIMAL: usize = 20;

/// Appends `{prefix}{line}\r\n`, turning CR and LF into spaces so the frame stays valid.
/// Appends a length header `{prefix}{n}\r\n` (RESP3 aggregates and blobs: `% ~ > = !`).
pub fn length_header(out: &mut BytesMut, prefix: u8, n: usize) {
    header(out, prefix, n);
}

/// Appends a length-prefixed blob `{prefix}{len}\r\n{data}\r\n` (`$`, or RESP3 `!`, `=`).
pub fn blob(out: &mut BytesMut, prefix: u8, data: &[u8]) {
    length_header(out, prefix, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn one_line(out: &mut BytesMut, prefix: u8, line: &[u8]) {
    out.reserve(line.len() + 3);
    out.put_u8(prefix);
    // Copy runs between line breaks in bulk; messages almost never contain any.
    let mut rest = line;
    while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        let (run, tail) = rest.split_at(i);
        out.put_slice(run);
        out.put_u8(b' ');
        rest = tail.get(1..).unwrap_or_default();
    }
    out.put_slice(rest);
    out.put_slice(b"\r\n");
}

/// Appends a length header such as `$3\r\n` or `*2\r\n`: built on the stack and appended in
/// one copy (one capacity check, not one per byte).
pub(crate) fn header(out: &mut BytesMut, prefix: u8, n: usize) {
    // One digit, the usual case (a split part's `*3`, a reply's `$5`): four bytes at once.
    if let Ok(digit @ 0..=9) = u8::try_from(n) {
        out.extend_from_slice(&[prefix, b'0' + digit, b'\r', b'\n']);
        return;
    }
    let mut line = [0u8; 1 + MAX_DECIMAL + 2];
    let crlf = line.len() - 2;
    if let Some(end) = line.get_mut(crlf..) {
        end.copy_from_slice(b"\r\n");
    }
    // At most 20 digits: there is room for the prefix before them.
    let at = digits_before(&mut line, crlf, n as u64) - 1;
    if let Some(p) = line.get_mut(at) {
        *p = prefix;
    }
    out.extend_from_slice(line.get(at..).unwrap_or_default());
}

/// Bytes a bulk string of `len` data bytes takes once encoded.
pub(crate) fn bulk_len(len: usize) -> usize {
    1 + decimal_len(len as u64) + 2 + len + 2
}

/// Bytes an array or bulk header for `n` takes once encoded.
pub(crate) fn header_len(n: usize) -> usize {
    1 + decimal_len(n as u64) + 2
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Formats on the stack: `format!`/`itoa`-free, and no allocation on the reply path.
fn put_u64(out: &mut BytesMut, n: u64) {
    let mut digits = [0u8; MAX_DECIMAL];
    let at = digits_before(&mut digits, MAX_DECIMAL, n);
    out.put_slice(digits.get(at..).unwrap_or_default());
}

/// Writes the decimal digits of `n` into `buf` so that they end just before `end`, and
/// returns where they start; `buf` has room for [`MAX_DECIMAL`] digits before `end`.
fn digits_before(buf: &mut [u8], mut end: usize, mut n: u64) -> usize {
    loop {
        end -= 1;
        // `n % 10 < 10`, so the cast cannot truncate.
        if let Some(d) = buf.get_mut(end) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            return end;
        }
    }
}

fn put_i64(out: &mut BytesMut, n: i64) {
    if n < 0 {
        out.put_u8(b'-');
    }
    put_u64(out, n.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut out);
        out.to_vec()
    }

    #[test]
    fn every_encoder() {
        assert_eq!(enc(|o| simple(o, "OK")), b"+OK\r\n");
        assert_eq!(enc(|o| error(o, "ERR bad")), b"-ERR bad\r\n");
        assert_eq!(enc(|o| integer(o, 0)), b":0\r\n");
        assert_eq!(enc(|o| integer(o, -42)), b":-42\r\n");
        assert_eq!(enc(|o| integer(o, i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(enc(|o| integer(o, i64::MAX)), b":9223372036854775807\r\n");
        assert_eq!(enc(|o| bulk(o, b"a\r\nb")), b"$4\r\na\r\nb\r\n");
        assert_eq!(enc(|o| bulk(o, b"")), b"$0\r\n\r\n");
        assert_eq!(enc(null_bulk), b"$-1\r\n");
        assert_eq!(enc(|o| array_header(o, 10)), b"*10\r\n");
        for n in [1usize, 9, 11, 256, 265] {
            assert_eq!(
                enc(|o| map_header(o, n)),
                format!("%{n}\r\n").as_bytes(),
                "{n}"
            );
        }
        assert_eq!(enc(|o| array_header(o, 0)), b"*0\r\n");
        assert_eq!(
            enc(|o| length_header(o, b'$', usize::MAX)),
            format!("${}\r\n", usize::MAX).as_bytes()
        );
        assert_eq!(enc(null_array), b"*-1\r\n");
    }

    #[test]
    fn line_breaks_cannot_split_a_status_or_error() {
        assert_eq!(enc(|o| error(o, "ERR a\r\nb\n")), b"-ERR a  b \r\n");
        assert_eq!(enc(|o| simple(o, "\rx")), b"+ x\r\n");
    }

    #[test]
    fn lengths_agree_with_encoding() {
        for n in [0usize, 9, 10, 99, 100, 123_456] {
            assert_eq!(header_len(n), enc(|o| array_header(o, n)).len());
            let data = vec![b'x'; n];
            assert_eq!(bulk_len(n), enc(|o| bulk(o, &data)).len());
        }
        assert_eq!(decimal_len(u64::MAX), MAX_DECIMAL);
    }
}
