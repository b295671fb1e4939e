//! Redis' glob patterns (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`. Pure.
//!
//! Used where Redis matches names: `COMMAND LIST FILTERBY PATTERN` (case-insensitive) and the
//! key patterns of co-location rules (case-sensitive, as `KEYS` and `SCAN … MATCH`).

/// Whether letters match regardless of case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// `a` matches only `a` (key patterns).
    Sensitive,
    /// `a` matches `a` and `A` (command names).
    Insensitive,
}

impl Case {
    #[inline]
    fn fold(self, c: u8) -> u8 {
        match self {
            Case::Sensitive => c,
            Case::Insensitive => c.to_ascii_lowercase(),
        }
    }
}

/// Whether `text` matches `pattern`. Iterative with single-star backtracking, so a hostile
/// pattern costs O(pattern × text), no recursion.
pub fn matches(pattern: &[u8], text: &[u8], case: Case) -> bool {
    let (mut p, mut s) = (0, 0);
    // Where to resume after the most recent `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while s < text.len() {
        let c = text.get(s).copied().unwrap_or_default();
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, s));
                p += 1;
                continue;
            }
            Some(_) => {
                if let Some(next) = match_one(pattern, p, c, case) {
                    p = next;
                    s += 1;
                    continue;
                }
            }
            None => {}
        }
        match star {
            Some((sp, ss)) => {
                star = Some((sp, ss + 1));
                p = sp;
                s = ss + 1;
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&b| b == b'*')
}

/// Whether `pattern` matches only texts that begin with `prefix` and nothing else: the
/// pattern is `prefix` (no special characters in it) followed by `*`. Lets a caller test a
/// prefix instead of running the matcher.
pub fn literal_prefix(pattern: &[u8]) -> Option<&[u8]> {
    let prefix = pattern.strip_suffix(b"*")?;
    (!prefix
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\')))
    .then_some(prefix)
}

/// Matches the single pattern element at `pat[p]` (not `*`) against `c`; returns the index
/// after the element on a match.
fn match_one(pat: &[u8], p: usize, c: u8, case: Case) -> Option<usize> {
    let lc = case.fold(c);
    match pat.get(p)? {
        b'?' => Some(p + 1),
        b'[' => {
            let mut i = p + 1;
            let negate = pat.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            // An unterminated class runs to the end of the pattern, as in Redis.
            while let Some(&b) = pat.get(i) {
                match (b, pat.get(i + 1), pat.get(i + 2)) {
                    (b']', _, _) => break,
                    // Redis compares an escaped class member case-sensitively.
                    (b'\\', Some(&e), _) => {
                        hit |= e == c;
                        i += 2;
                    }
                    (lo, Some(b'-'), Some(&hi)) => {
                        let (lo, hi) = (case.fold(lo), case.fold(hi));
                        hit |= lo.min(hi) <= lc && lc <= lo.max(hi);
                        i += 3;
                    }
                    (b, _, _) => {
                        hit |= case.fold(b) == lc;
                        i += 1;
                    }
                }
            }
            (hit != negate).then_some(i + 1)
        }
        b'\\' if p + 1 < pat.len() => {
            let e = pat.get(p + 1)?;
            (case.fold(*e) == lc).then_some(p + 2)
        }
        b => (case.fold(*b) == lc).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nocase_follows_redis_stringmatch() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "get", true),
            ("", "", true),
            ("", "get", false),
            ("g?t", "GET", true),
            ("G*", "getex", true),
            ("*ex", "getex", true),
            ("*e*x*", "getex", true),
            ("**x", "getex", true),
            ("get", "getex", false),
            ("[gs]et", "set", true),
            ("[^gs]et", "set", false),
            ("[a-h]et", "get", true),
            ("[H-A]et", "get", true),
            ("[\\g]et", "get", true),
            ("\\get", "get", true),
            ("client\\|*", "client|kill", true),
            ("[abc", "b", true),
            ("*|k*", "client|kill", true),
            (
                "a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p*q*r*s*t*u*v*w*x*y*z*",
                "abcdefghijklmnopqrstuvwxy",
                false,
            ),
        ];
        for (pat, name, want) in cases {
            assert_eq!(
                matches(pat.as_bytes(), name.as_bytes(), Case::Insensitive),
                *want,
                "{pat} vs {name}"
            );
        }
    }

    #[test]
    fn sensitive_matching_keeps_case() {
        let cases: &[(&str, &str, bool)] = &[
            ("rq:*", "rq:job:1", true),
            ("rq:*", "RQ:job:1", false),
            ("[a-c]x", "Bx", false),
            ("[a-c]x", "bx", true),
            ("celery-task-meta-*", "celery-task-meta-42", true),
            ("\\*", "*", true),
            ("_kombu.binding.*", "_kombu.binding.celery", true),
        ];
        for (pat, text, want) in cases {
            assert_eq!(
                matches(pat.as_bytes(), text.as_bytes(), Case::Sensitive),
                *want,
                "{pat} vs {text}"
            );
        }
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(b"rq:*"), Some(&b"rq:"[..]));
        assert_eq!(literal_prefix(b"*"), Some(&b""[..]));
        assert_eq!(literal_prefix(b"rq:?*"), None);
        assert_eq!(literal_prefix(b"rq:"), None);
        assert_eq!(literal_prefix(b"a\\*"), None);
    }
}
