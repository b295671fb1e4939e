//! Inline commands: splitting a telnet-style line such as `SET "a b" 'c'` into arguments.
//!
//! The rules are those of Redis' `sdssplitargs`, checked against redis-server 7.0.15:
//! - arguments are separated by whitespace (`isspace`: space, `\t`, `\n`, `\v`, `\f`, `\r`),
//!   but inside an unquoted argument only space, `\t`, `\n` and `\r` end it;
//! - a double quote starts a quoted run anywhere, even mid-argument (`a"b c"` is `ab c`), with
//!   escapes `\n \r \t \b \a \xHH`, and `\<other>` meaning `<other>`;
//! - a single quote starts a run where only `\'` is an escape;
//! - a closing quote must be followed by whitespace or the end of the line, and a quote left
//!   open is an error ("unbalanced quotes").
//!
//! One deliberate difference: Redis handles the line as a C string, so a NUL byte cuts it short
//! (in practice Redis never even finds the newline after one). Here NUL is an ordinary byte.

use super::request::{span, Spans};
use super::ParseError;

/// Splits `line` (without its `\n` or `\r\n`) into arguments, writing their unescaped bytes
/// back to back into `out` and each argument's range in `out` into `spans`. No arguments (a
/// blank line) is not an error: the caller skips such a line.
pub(crate) fn split_args(
    line: &[u8],
    out: &mut Vec<u8>,
    spans: &mut Spans,
) -> Result<(), ParseError> {
    out.clear();
    spans.clear();
    let mut p = 0;
    loop {
        while line.get(p).copied().is_some_and(is_space) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(());
        }
        let start = out.len();
        p = split_one(line, p, out)?;
        spans.push(span(start, out.len()));
    }
}

/// Reads the argument starting at `line[p]` into `out`; returns where the next one may start.
fn split_one(line: &[u8], mut p: usize, out: &mut Vec<u8>) -> Result<usize, ParseError> {
    // The quote character of the run we are in, if any.
    let mut quote: Option<u8> = None;
    loop {
        let Some(&c) = line.get(p) else {
            return match quote {
                Some(_) => Err(ParseError::UnbalancedQuotes),
                None => Ok(p),
            };
        };
        match quote {
            Some(b'"') => match c {
                b'\\' if p + 1 < line.len() => {
                    if let Some(byte) = hex_escape(line.get(p + 1..p + 4)) {
                        out.push(byte);
                        p += 4;
                    } else {
                        let e = line.get(p + 1).copied().unwrap_or(b'\\');
                        out.push(unescape(e));
                        p += 2;
                    }
                    continue;
                }
                b'"' => return after_closing_quote(line, p),
                // Includes a backslash that is the last byte: kept literally, and the run is
                // then unterminated, as in Redis.
                _ => out.push(c),
            },
            Some(_) => match c {
                b'\\' if line.get(p + 1) == Some(&b'\'') => {
                    out.push(b'\'');
                    p += 2;
                    continue;
                }
                b'\'' => return after_closing_quote(line, p),
                _ => out.push(c),
            },
            None => match c {
                b' ' | b'\n' | b'\r' | b'\t' => return Ok(p + 1),
                b'"' | b'\'' => quote = Some(c),
                _ => out.push(c),
            },
        }
        p += 1;
    }
}

/// The closing quote at `line[p]` ends the argument; Redis insists it is not glued to more text.
fn after_closing_quote(line: &[u8], p: usize) -> Result<usize, ParseError> {
    match line.get(p + 1) {
        Some(&next) if !is_space(next) => Err(ParseError::UnbalancedQuotes),
        _ => Ok(p + 1),
    }
}

/// `\xHH` inside double quotes, given the three bytes after the backslash.
fn hex_escape(esc: Option<&[u8]>) -> Option<u8> {
    match esc? {
        [b'x', hi, lo] => Some((hex_digit(*hi)? << 4) | hex_digit(*lo)?),
        _ => None,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    // to_digit(16) is < 16, so the cast is lossless.
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// The byte a one-character escape inside double quotes stands for.
fn unescape(e: u8) -> u8 {
    match e {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    }
}

/// C `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
        let (mut out, mut spans) = (Vec::new(), Spans::new());
        split_args(line, &mut out, &mut spans)?;
        Ok(spans
            .iter()
            .map(|&(s, e)| out[s as usize..e as usize].to_vec())
            .collect())
    }

    fn ok(line: &[u8], want: &[&[u8]]) {
        let got = split(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let want: Vec<Vec<u8>> = want.iter().map(|w| w.to_vec()).collect();
        assert_eq!(got, want, "{:?}", line.escape_ascii().to_string());
    }

    #[test]
    fn plain_words() {
        ok(b"GET key", &[b"GET", b"key"]);
        ok(b"  SET   a  b  ", &[b"SET", b"a", b"b"]);
        ok(b"ECHO a\tb", &[b"ECHO", b"a", b"b"]);
        ok(b"ECHO a\rb", &[b"ECHO", b"a", b"b"]);
        ok(b"", &[]);
        ok(b" \t ", &[]);
    }

    #[test]
    fn vertical_tab_and_form_feed_separate_only_between_words() {
        // Observed: `ECHO a\vb` echoes "a\vb", `ECHO \v\fa` echoes "a".
        ok(b"ECHO a\x0bb", &[b"ECHO", b"a\x0bb"]);
        ok(b"ECHO a\x0cb", &[b"ECHO", b"a\x0cb"]);
        ok(b"ECHO \x0b\x0ca", &[b"ECHO", b"a"]);
    }

    #[test]
    fn double_quotes_and_escapes() {
        ok(b"ECHO \"a\\x41\\n\"", &[b"ECHO", b"aA\n"]);
        ok(b"ECHO \"\\b\\a\\t\\r\"", &[b"ECHO", b"\x08\x07\t\r"]);
        ok(b"ECHO \"a\\\"b\"", &[b"ECHO", b"a\"b"]);
        ok(b"ECHO \"\\xZZ\"", &[b"ECHO", b"xZZ"]);
        ok(b"ECHO \"\\x4\"", &[b"ECHO", b"x4"]);
        ok(b"ECHO \"\\x4g\"", &[b"ECHO", b"x4g"]);
        ok(b"ECHO \"\\xfF\"", &[b"ECHO", b"\xff"]);
        ok(b"ECHO \"\\q\"", &[b"ECHO", b"q"]);
        ok(b"ECHO \"a b\"\t", &[b"ECHO", b"a b"]);
        ok(b"ECHO \"a\"\x0b", &[b"ECHO", b"a"]);
        ok(b"ECHO \"\"", &[b"ECHO", b""]);
    }

    #[test]
    fn single_quotes() {
        ok(b"ECHO 'a\\'b'", &[b"ECHO", b"a'b"]);
        ok(b"ECHO 'a\\nb'", &[b"ECHO", b"a\\nb"]);
        ok(b"ECHO 'a\\''", &[b"ECHO", b"a'"]);
        ok(b"ECHO ''", &[b"ECHO", b""]);
    }

    #[test]
    fn quotes_may_open_mid_word() {
        ok(b"ECHO a\"b\"", &[b"ECHO", b"ab"]);
        ok(b"ECHO a\"b c\" d", &[b"ECHO", b"ab c", b"d"]);
        ok(b"x'y z'", &[b"xy z"]);
    }

    #[test]
    fn nul_is_an_ordinary_byte() {
        ok(b"ECHO a\0b", &[b"ECHO", b"a\0b"]);
        ok(b"ECHO \"a\0\"", &[b"ECHO", b"a\0"]);
    }

    #[test]
    fn unbalanced_quotes() {
        let bad: &[&[u8]] = &[
            b"ECHO \"a\"b",
            b"ECHO \"abc",
            b"ECHO 'a'b",
            b"ECHO \"\"x",
            b"ECHO \"a\\",
            b"ECHO 'a\\",
            b"ECHO 'abc",
            b"\"",
        ];
        for line in bad {
            assert_eq!(split(line), Err(ParseError::UnbalancedQuotes), "{line:?}");
        }
    }
}
