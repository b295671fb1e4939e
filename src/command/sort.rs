//! SORT and SORT_RO with `BY` / `GET` patterns, computed in the proxy: a cluster node refuses
//! the patterns (their keys may live anywhere), and in pool mode they would name keys of other
//! pools. Pure: the caller fetches the elements and the patterns' keys ([`SortRequest`] says
//! which), this module parses, sorts and builds the answer exactly as Redis' `sortCommand`.

/// Why a SORT request cannot run (Redis' own error texts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortError {
    /// `ERR syntax error`.
    Syntax,
    /// A LIMIT argument that is not an integer.
    NotInteger,
    /// A weight (an element, or a BY key's value) that is not a number, in numeric order.
    NotDouble,
}

impl SortError {
    /// The error text Redis answers.
    pub fn message(&self) -> &'static str {
        match self {
            SortError::Syntax => "ERR syntax error",
            SortError::NotInteger => "ERR value is not an integer or out of range",
            SortError::NotDouble => "ERR One or more scores can't be converted into double",
        }
    }
}

/// A parsed SORT request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SortRequest {
    /// The key sorted.
    pub key: Vec<u8>,
    /// The BY pattern, if any.
    pub by: Option<Vec<u8>>,
    /// GET patterns, in order (`#` is the element itself).
    pub get: Vec<Vec<u8>>,
    /// LIMIT offset count.
    pub limit: Option<(i64, i64)>,
    /// DESC.
    pub desc: bool,
    /// ALPHA.
    pub alpha: bool,
    /// STORE destination.
    pub store: Option<Vec<u8>>,
}

impl SortRequest {
    /// Parse `SORT key [BY p] [LIMIT o c] [GET p …] [ASC|DESC] [ALPHA] [STORE d]`
    /// (`store_allowed`: false for SORT_RO, which has no STORE).
    pub fn parse(args: &[&[u8]], store_allowed: bool) -> Result<SortRequest, SortError> {
        let mut request = SortRequest {
            key: args.get(1).ok_or(SortError::Syntax)?.to_vec(),
            ..SortRequest::default()
        };
        let mut i = 2;
        while let Some(arg) = args.get(i) {
            let word = arg.to_ascii_lowercase();
            let next = args.get(i + 1);
            match (word.as_slice(), next) {
                (b"asc", _) => request.desc = false,
                (b"desc", _) => request.desc = true,
                (b"alpha", _) => request.alpha = true,
                (b"limit", Some(offset)) => {
                    let count = args.get(i + 2).ok_or(SortError::Syntax)?;
                    request.limit = Some((integer(offset)?, integer(count)?));
                    i += 2;
                }
                (b"store", Some(dest)) if store_allowed => {
                    request.store = Some(dest.to_vec());
                    i += 1;
                }
                (b"by", Some(pattern)) => {
                    request.by = Some(pattern.to_vec());
                    i += 1;
                }
                (b"get", Some(pattern)) => {
                    request.get.push(pattern.to_vec());
                    i += 1;
                }
                _ => return Err(SortError::Syntax),
            }
            i += 1;
        }
        Ok(request)
    }

    /// Whether the request has patterns the proxy must resolve (a BY with `*`, or any GET
    /// other than `#`).
    pub fn has_patterns(&self) -> bool {
        self.by.as_deref().is_some_and(|p| p.contains(&b'*'))
            || self.get.iter().any(|p| p.as_slice() != b"#")
    }

    /// Whether the elements keep their order (a BY pattern with no `*`: Redis does not sort).
    pub fn dont_sort(&self) -> bool {
        self.by.as_deref().is_some_and(|p| !p.contains(&b'*'))
    }
}

fn integer(arg: &[u8]) -> Result<i64, SortError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(SortError::NotInteger)
}

/// Where a pattern's value for `element` lives: `(key, Some(field))` for `key->field`, or
/// `None` when the pattern has no `*` (then it names no key; `#` is handled by the caller).
/// Redis' `lookupKeyByPattern`: the first `*` is replaced by the element; a `->` after it,
/// followed by at least one byte, names a hash field.
pub fn pattern_key(pattern: &[u8], element: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let star = pattern.iter().position(|&b| b == b'*')?;
    let after = pattern.get(star + 1..).unwrap_or_default();
    let arrow = after
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&at| at + 2 < after.len());
    let (post, field) = match arrow {
        Some(at) => (
            after.get(..at).unwrap_or_default(),
            Some(after.get(at + 2..).unwrap_or_default().to_vec()),
        ),
        None => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + element.len());
    key.extend_from_slice(pattern.get(..star).unwrap_or_default());
    key.extend_from_slice(element);
    key.extend_from_slice(post);
    Some((key, field))
}

/// Redis' `strtod`-based score parsing for SORT: the whole string must be a number (leading
/// spaces allowed by strtod are not accepted by Redis' check of the end either).
fn parse_double(value: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(value).ok()?;
    if text.is_empty() || text.starts_with(char::is_whitespace) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => return text.parse::<f64>().ok(),
        "nan" => return None,
        _ => {}
    }
    text.parse::<f64>().ok().filter(|v| !v.is_nan())
}

/// Sort `elements` as Redis does, with `weights[i]` the BY value of element `i` (`None`: its
/// key or field is missing; ignored without a BY pattern). Returns the order, after LIMIT.
pub fn sort(
    request: &SortRequest,
    elements: &[Vec<u8>],
    weights: &[Option<Vec<u8>>],
) -> Result<Vec<usize>, SortError> {
    let by = request.by.is_some() && !request.dont_sort();
    let mut order: Vec<usize> = (0..elements.len()).collect();
    if !request.dont_sort() {
        if request.alpha {
            let key = |i: usize| -> Option<&[u8]> {
                if by {
                    weights.get(i).and_then(|w| w.as_deref())
                } else {
                    elements.get(i).map(Vec::as_slice)
                }
            };
            order.sort_by(|&a, &b| {
                let cmp = match (key(a), key(b)) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Less,
                    (Some(_), None) => std::cmp::Ordering::Greater,
                    (Some(x), Some(y)) => x.cmp(y),
                };
                if request.desc {
                    cmp.reverse()
                } else {
                    cmp
                }
            });
        } else {
            let mut scores = Vec::with_capacity(elements.len());
            for (i, element) in elements.iter().enumerate() {
                let source = if by {
                    weights.get(i).and_then(|w| w.as_deref())
                } else {
                    Some(element.as_slice())
                };
                scores.push(match source {
                    None => 0.0,
                    Some(v) => parse_double(v).ok_or(SortError::NotDouble)?,
                });
            }
            order.sort_by(|&a, &b| {
                let (x, y) = (scores.get(a).copied(), scores.get(b).copied());
                let cmp = x
                    .partial_cmp(&y)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| elements.get(a).cmp(&elements.get(b)));
                if request.desc {
                    cmp.reverse()
                } else {
                    cmp
                }
            });
        }
    }
    let (start, end) = limit_range(request.limit, order.len());
    Ok(order
        .get(start..end)
        .map(<[usize]>::to_vec)
        .unwrap_or_default())
}

/// Redis' LIMIT arithmetic: a negative offset is 0, a negative count means "to the end".
fn limit_range(limit: Option<(i64, i64)>, len: usize) -> (usize, usize) {
    let Some((offset, count)) = limit else {
        return (0, len);
    };
    let start = usize::try_from(offset.max(0))
        .unwrap_or(usize::MAX)
        .min(len);
    let end = if count < 0 {
        len
    } else {
        start
            .saturating_add(usize::try_from(count).unwrap_or(usize::MAX))
            .min(len)
    };
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<SortRequest, SortError> {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        SortRequest::parse(&args, true)
    }

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn options_parse_as_redis_reads_them() {
        let r = parse(&[
            "SORT", "l", "BY", "w_*", "LIMIT", "0", "2", "GET", "#", "GET", "o_*->f", "DESC",
            "ALPHA", "STORE", "d",
        ])
        .unwrap();
        assert_eq!(r.by, Some(v("w_*")));
        assert_eq!(r.get, vec![v("#"), v("o_*->f")]);
        assert_eq!((r.limit, r.desc, r.alpha), (Some((0, 2)), true, true));
        assert_eq!(r.store, Some(v("d")));
        assert!(r.has_patterns());
        assert_eq!(
            parse(&["SORT", "l", "LIMIT", "x", "1"]),
            Err(SortError::NotInteger)
        );
        assert_eq!(parse(&["SORT", "l", "BY"]), Err(SortError::Syntax));
        assert_eq!(parse(&["SORT", "l", "nope"]), Err(SortError::Syntax));
        assert!(!parse(&["SORT", "l", "GET", "#"]).unwrap().has_patterns());
        assert!(parse(&["SORT", "l", "BY", "nosort"]).unwrap().dont_sort());
    }

    #[test]
    fn patterns_name_keys_and_fields() {
        assert_eq!(pattern_key(b"w_*", b"3"), Some((v("w_3"), None)));
        assert_eq!(
            pattern_key(b"o_*->name", b"3"),
            Some((v("o_3"), Some(v("name"))))
        );
        assert_eq!(pattern_key(b"o_*->", b"3"), Some((v("o_3->"), None)));
        assert_eq!(pattern_key(b"{t}*:x", b"a"), Some((v("{t}a:x"), None)));
        assert_eq!(pattern_key(b"nostar", b"a"), None);
    }

    #[test]
    fn sorts_by_weights_numeric_and_alpha() {
        let elements = vec![v("a"), v("b"), v("c")];
        let r = parse(&["SORT", "l", "BY", "w_*"]).unwrap();
        let weights = vec![Some(v("3")), None, Some(v("1"))];
        // A missing weight is 0.
        assert_eq!(sort(&r, &elements, &weights).unwrap(), vec![1, 2, 0]);
        let r = parse(&["SORT", "l", "BY", "w_*", "ALPHA", "DESC", "LIMIT", "0", "2"]).unwrap();
        let weights = vec![Some(v("x")), None, Some(v("y"))];
        assert_eq!(sort(&r, &elements, &weights).unwrap(), vec![2, 0]);
        let r = parse(&["SORT", "l", "BY", "w_*"]).unwrap();
        let bad = vec![Some(v("x")), None, None];
        assert_eq!(sort(&r, &elements, &bad), Err(SortError::NotDouble));
        // Equal scores: by element, so the order is deterministic.
        let r = parse(&["SORT", "l", "BY", "w_*", "DESC"]).unwrap();
        let same = vec![Some(v("1")), Some(v("1")), Some(v("1"))];
        assert_eq!(sort(&r, &elements, &same).unwrap(), vec![2, 1, 0]);
        let r = parse(&["SORT", "l", "BY", "nosort", "LIMIT", "1", "-1"]).unwrap();
        assert_eq!(sort(&r, &elements, &[]).unwrap(), vec![1, 2]);
    }
}
