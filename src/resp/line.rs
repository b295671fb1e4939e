//! Header lines: finding the CRLF that ends one, and parsing the integer inside it.
//!
//! Shared by both decoders. A line is searched for incrementally (the caller keeps how far the
//! previous call got), so a line trickling in one byte per read costs linear time in total, and
//! the search never looks further than the line may legally be, so a peer that never sends CR
//! cannot make us scan its whole buffer on every read.

/// Outcome of looking for the end of a line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's content ends at this index, and `buf[end..end + 2] == b"\r\n"`.
    End(usize),
    /// No CRLF yet: wait for more bytes.
    Partial,
    /// The content is already longer than allowed.
    TooLong,
    /// A CR followed by something other than LF.
    BadTerminator,
}

/// Finds the CRLF ending the line whose content starts at `start` and may be `max_len` long.
///
/// `scanned` counts content bytes already known to hold no CR; it is advanced so the next call
/// resumes where this one stopped, and must be reset to 0 for each new line.
pub(crate) fn find_line(buf: &[u8], start: usize, scanned: &mut usize, max_len: usize) -> Line {
    // One past the last index where the terminating CR may sit.
    let limit = start.saturating_add(max_len).saturating_add(1);
    let from = start.saturating_add(*scanned);
    let to = buf.len().min(limit);
    let window = buf.get(from..to).unwrap_or_default();
    if let Some(i) = window.iter().position(|&b| b == b'\r') {
        let cr = from + i;
        // Stop right at the CR: if its LF has not arrived yet, the next call finds it at once.
        *scanned = cr - start;
        return match buf.get(cr + 1) {
            None => Line::Partial,
            Some(b'\n') => Line::End(cr),
            Some(_) => Line::BadTerminator,
        };
    }
    if to >= limit {
        return Line::TooLong;
    }
    *scanned = to.saturating_sub(start);
    Line::Partial
}

/// Parses a decimal `i64` the way Redis' `string2ll` does, so we accept and refuse exactly what
/// Redis does: an optional `-`, then `0` alone or a non-zero digit followed by digits. No `+`,
/// no leading zeros, no `-0`, no whitespace, no overflow.
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // Covers i64::MIN, whose magnitude does not fit a positive i64.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// A complete `<marker><integer>\r\n` line at `at` whose content is at most `max_len` long:
/// the integer and the index just after the line. Accepts exactly what [`parse_int`] accepts,
/// in one pass over the digits (the fast paths call it for every header of every frame).
///
/// The usual headers (`$3\r\n`, `*12\r\n`: one or two digits, the first not 0; and
/// `$-1\r\n`) are decided here, inlined, in a few compares; anything else, or a line that
/// ends the buffer, by [`header_line_general`].
#[inline(always)]
pub(crate) fn header_line(
    buf: &[u8],
    at: usize,
    marker: u8,
    max_len: usize,
) -> Option<(i64, usize)> {
    if let Some(&[m, d0, d1, b3, b4]) = buf.get(at..).and_then(<[u8]>::first_chunk::<5>) {
        if m == marker && (b'1'..=b'9').contains(&d0) {
            let first = i64::from(d0 - b'0');
            if d1 == b'\r' && b3 == b'\n' && max_len >= 1 {
                return Some((first, at + 4));
            }
            if d1.is_ascii_digit() && b3 == b'\r' && b4 == b'\n' && max_len >= 2 {
                return Some((first * 10 + i64::from(d1 - b'0'), at + 5));
            }
        }
        // A null bulk or array (`$-1\r\n`, `*-1\r\n`).
        if [m, d0, d1, b3, b4] == [marker, b'-', b'1', b'\r', b'\n'] && max_len >= 2 {
            return Some((-1, at + 5));
        }
    }
    header_line_general(buf, at, marker, max_len)
}

/// [`header_line`] for any line: a loop over the digits.
#[inline(never)]
fn header_line_general(buf: &[u8], at: usize, marker: u8, max_len: usize) -> Option<(i64, usize)> {
    let line = buf.get(at..)?;
    if *line.first()? != marker {
        return None;
    }
    let content = line.get(1..)?;
    let negative = content.first() == Some(&b'-');
    let first_digit = usize::from(negative);
    let mut end = first_digit;
    let mut magnitude: u64 = 0;
    while let Some(&d) = content.get(end) {
        if !d.is_ascii_digit() {
            break;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
        end += 1;
    }
    match content.get(first_digit..end)? {
        // No digits, a leading zero, or `-0`: refused as by `string2ll`.
        [] => return None,
        [b'0', _, ..] => return None,
        [b'0'] if negative => return None,
        _ => {}
    }
    if end > max_len || content.get(end..end + 2)? != b"\r\n" {
        return None;
    }
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)?
    } else {
        i64::try_from(magnitude).ok()?
    };
    Some((value, at + 1 + end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_line_accepts_what_parse_int_accepts() {
        let contents: &[&[u8]] = &[
            b"0",
            b"7",
            b"-1",
            b"16",
            b"99",
            b"10",
            b"100",
            b"1\r",
            b"1048576",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"",
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"a1",
            b"12\r",
            b"1\n",
        ];
        for content in contents {
            for max_len in [0, 1, 2, 64] {
                let mut line = b"$".to_vec();
                line.extend_from_slice(content);
                line.extend_from_slice(b"\r\nrest");
                let want = parse_int(content)
                    .filter(|_| content.len() <= max_len)
                    .map(|v| (v, content.len() + 3));
                assert_eq!(
                    header_line(&line, 0, b'$', max_len),
                    want,
                    "{content:?} {max_len}"
                );
                // At an offset, with the wrong marker, and cut short.
                let mut shifted = b"xx".to_vec();
                shifted.extend_from_slice(&line);
                let want_shifted = want.map(|(v, end)| (v, end + 2));
                assert_eq!(header_line(&shifted, 2, b'$', max_len), want_shifted);
                assert_eq!(header_line(&line, 0, b'*', max_len), None);
                assert_eq!(
                    header_line(&line[..content.len() + 2], 0, b'$', max_len),
                    None
                );
            }
        }
    }

    #[test]
    fn parse_int_matches_string2ll() {
        let ok: &[(&[u8], i64)] = &[
            (b"0", 0),
            (b"7", 7),
            (b"-1", -1),
            (b"1048576", 1_048_576),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ];
        for (s, want) in ok {
            assert_eq!(parse_int(s), Some(*want), "{s:?}");
        }
        let bad: &[&[u8]] = &[
            b"",
            b"-",
            b"-0",
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"1a",
            b"0x10",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
            b"--1",
        ];
        for s in bad {
            assert_eq!(parse_int(s), None, "{s:?}");
        }
    }

    #[test]
    fn find_line_outcomes() {
        let mut n = 0;
        assert_eq!(find_line(b"*12\r\n", 1, &mut n, 10), Line::End(3));
        n = 0;
        assert_eq!(find_line(b"*12\r", 1, &mut n, 10), Line::Partial);
        assert_eq!(n, 2, "stops at the CR so it is found again at once");
        n = 0;
        assert_eq!(find_line(b"*12\rx", 1, &mut n, 10), Line::BadTerminator);
        n = 0;
        assert_eq!(find_line(b"*1234", 1, &mut n, 4), Line::Partial);
        assert_eq!(n, 4);
        assert_eq!(find_line(b"*12345", 1, &mut n, 4), Line::TooLong);
        n = 0;
        assert_eq!(find_line(b"*1234\r\n", 1, &mut n, 4), Line::End(5));
        n = 0;
        assert_eq!(find_line(b"*12345\r\n", 1, &mut n, 4), Line::TooLong);
    }

    #[test]
    fn find_line_resumes_without_rescanning() {
        let data = b"$123456789\r\n";
        let mut scanned = 0;
        for len in 0..data.len() {
            let got = find_line(&data[..len], 1, &mut scanned, 100);
            assert_eq!(got, Line::Partial, "at {len}");
            assert!(scanned <= len.saturating_sub(1));
        }
        assert_eq!(find_line(data, 1, &mut scanned, 100), Line::End(10));
    }

    #[test]
    fn find_line_tolerates_stale_offsets() {
        let mut scanned = 50;
        assert_eq!(find_line(b"ab", 10, &mut scanned, 100), Line::Partial);
    }
}
