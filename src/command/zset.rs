//! ZUNION, ZINTER, ZDIFF and ZINTERCARD computed by the proxy from each key's members and
//! scores, the way Redis 7.0 computes them (`zunionInterDiffGenericCommand` in t_zset.c).
//! Pure: no I/O.
//!
//! Exactness: weights multiply a score before it is aggregated (`inf * 0`, a NaN, counts as
//! 0); the inputs of a union or intersection are taken from the smallest to the largest (a
//! stable order, as glibc's `qsort` keeps it), so a sum adds in Redis' order; the result is
//! ordered by score, then by member bytes; scores print as Redis 7.0 prints doubles (`%.17g`,
//! `inf`, `-inf`).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::resp::encode;

/// Which of the sorted-set operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZOp {
    /// ZUNION.
    Union,
    /// ZINTER.
    Inter,
    /// ZDIFF: the first key's members that no other key has, with the first key's scores.
    Diff,
    /// ZINTERCARD: the size of the intersection.
    InterCard,
}

/// How the weighted scores of one member combine (AGGREGATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// SUM, the default; `inf + -inf` counts as 0.
    Sum,
    /// MIN.
    Min,
    /// MAX.
    Max,
}

/// The options after the keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// One weight per key, in key order (1 unless WEIGHTS gives it).
    pub weights: Vec<f64>,
    /// AGGREGATE.
    pub aggregate: Aggregate,
    /// WITHSCORES.
    pub withscores: bool,
    /// ZINTERCARD's LIMIT; 0: none.
    pub limit: u64,
}

/// One member and its score.
pub type Scored = (Bytes, f64);

/// The options of `op` with `numkeys` keys (`args`: what follows the keys), or the error Redis
/// answers for them — an error Redis gives only once every key has the right type.
pub fn parse_options(op: ZOp, numkeys: usize, args: &[&[u8]]) -> Result<Query, &'static str> {
    let mut query = Query {
        weights: vec![1.0; numkeys],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let (scored, card) = (matches!(op, ZOp::Union | ZOp::Inter), op == ZOp::InterCard);
    let mut j = 0;
    while let Some(option) = args.get(j) {
        let remaining = args.len() - j;
        let is = |name: &str| option.eq_ignore_ascii_case(name.as_bytes());
        if scored && remaining > numkeys && is("weights") {
            for (weight, text) in query.weights.iter_mut().zip(&args[j + 1..]) {
                *weight = parse_double(text).ok_or("ERR weight value is not a float")?;
            }
            j += numkeys + 1;
        } else if scored && remaining >= 2 && is("aggregate") {
            let how = args[j + 1];
            query.aggregate = if how.eq_ignore_ascii_case(b"sum") {
                Aggregate::Sum
            } else if how.eq_ignore_ascii_case(b"min") {
                Aggregate::Min
            } else if how.eq_ignore_ascii_case(b"max") {
                Aggregate::Max
            } else {
                return Err("ERR syntax error");
            };
            j += 2;
        } else if !card && is("withscores") {
            query.withscores = true;
            j += 1;
        } else if card && remaining >= 2 && is("limit") {
            query.limit = crate::resp::parse_int(args[j + 1])
                .and_then(|n| u64::try_from(n).ok())
                .ok_or("ERR LIMIT can't be negative")?;
            j += 2;
        } else {
            return Err("ERR syntax error");
        }
    }
    Ok(query)
}

/// The result of `op` over `inputs` (each key's members and scores, in key order), ordered as
/// Redis replies: by score, then by member. ZINTERCARD's count is [`inter_card`].
pub fn combine(op: ZOp, query: &Query, inputs: &[Vec<Scored>]) -> Vec<Scored> {
    let mut result = match op {
        ZOp::Union => union(query, inputs),
        ZOp::Inter | ZOp::InterCard => {
            let mut out = Vec::new();
            intersect(query, inputs, |member, score| {
                out.push((member.clone(), score));
                true
            });
            out
        }
        ZOp::Diff => diff(inputs),
    };
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    result
}

/// ZINTERCARD: the size of the intersection of `inputs`, at most `limit` (0: no limit).
pub fn inter_card(inputs: &[Vec<Scored>], limit: u64) -> u64 {
    let query = Query {
        weights: vec![1.0; inputs.len()],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit,
    };
    let mut count = 0u64;
    intersect(&query, inputs, |_, _| {
        count += 1;
        limit == 0 || count < limit
    });
    count
}

/// The key positions from the smallest input to the largest, equal sizes in key order.
fn by_size(inputs: &[Vec<Scored>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| inputs[i].len());
    order
}

/// `weight * score`, a NaN (`inf * 0`) counting as 0.
fn weighted(weight: f64, score: f64) -> f64 {
    let value = weight * score;
    if value.is_nan() {
        0.0
    } else {
        value
    }
}

/// `target` combined with `value` as Redis' `zunionInterAggregate` does.
fn aggregate(target: &mut f64, value: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += value;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if value < *target {
                *target = value;
            }
        }
        Aggregate::Max => {
            if value > *target {
                *target = value;
            }
        }
    }
}

fn union(query: &Query, inputs: &[Vec<Scored>]) -> Vec<Scored> {
    let mut scores: HashMap<&Bytes, f64> = HashMap::new();
    let mut order: Vec<&Bytes> = Vec::new();
    for i in by_size(inputs) {
        let weight = query.weights.get(i).copied().unwrap_or(1.0);
        for (member, score) in &inputs[i] {
            let value = weighted(weight, *score);
            match scores.get_mut(member) {
                Some(target) => aggregate(target, value, query.aggregate),
                None => {
                    scores.insert(member, value);
                    order.push(member);
                }
            }
        }
    }
    order
        .into_iter()
        .map(|member| (member.clone(), scores[member]))
        .collect()
}

/// Calls `found` with each member of every input and its aggregated score, until it answers
/// false.
fn intersect(query: &Query, inputs: &[Vec<Scored>], mut found: impl FnMut(&Bytes, f64) -> bool) {
    let order = by_size(inputs);
    let Some((&first, rest)) = order.split_first() else {
        return;
    };
    let lookups: Vec<(HashMap<&Bytes, f64>, f64)> = rest
        .iter()
        .map(|&i| {
            let map = inputs[i].iter().map(|(m, s)| (m, *s)).collect();
            (map, query.weights.get(i).copied().unwrap_or(1.0))
        })
        .collect();
    let weight = query.weights.get(first).copied().unwrap_or(1.0);
    'members: for (member, score) in &inputs[first] {
        let mut total = weighted(weight, *score);
        for (lookup, weight) in &lookups {
            let Some(other) = lookup.get(member) else {
                continue 'members;
            };
            // Not NaN-checked before aggregating, as in Redis.
            aggregate(&mut total, other * weight, query.aggregate);
        }
        if !found(member, total) {
            return;
        }
    }
}

fn diff(inputs: &[Vec<Scored>]) -> Vec<Scored> {
    let Some((first, rest)) = inputs.split_first() else {
        return Vec::new();
    };
    let others: Vec<std::collections::HashSet<&Bytes>> = rest
        .iter()
        .map(|input| input.iter().map(|(m, _)| m).collect())
        .collect();
    first
        .iter()
        .filter(|(member, _)| !others.iter().any(|o| o.contains(member)))
        .cloned()
        .collect()
}

/// The reply: members (RESP2: each followed by its score when `withscores`; RESP3: each
/// `[member, score]` pair an array, the score a double).
pub fn encode_reply(result: &[Scored], withscores: bool, resp3: bool) -> Bytes {
    let mut out = BytesMut::new();
    let flat = withscores && !resp3;
    encode::array_header(&mut out, result.len() * if flat { 2 } else { 1 });
    for (member, score) in result {
        if withscores && resp3 {
            encode::array_header(&mut out, 2);
        }
        encode::bulk(&mut out, member);
        if withscores {
            let text = format_double(*score);
            if resp3 {
                out.extend_from_slice(b",");
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            } else {
                encode::bulk(&mut out, text.as_bytes());
            }
        }
    }
    out.freeze()
}

/// A double as Redis 7.0 prints it: `inf`, `-inf`, else C's `%.17g`.
pub fn format_double(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // %g: the exponent %e would print with 17 significant digits picks the style.
    let scientific = format!("{value:.16e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..17).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            trim_fraction(mantissa),
            exponent.unsigned_abs()
        )
    } else {
        let decimals = usize::try_from(16 - exponent).unwrap_or(0);
        trim_fraction(&format!("{value:.decimals$}")).to_string()
    }
}

/// `%g` drops trailing zeros of the fraction, and the point with them.
fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// A double as Redis 7.0 reads one (`string2d`: C's `strtod`, the whole text, no leading
/// space, no NaN, no overflow, no underflow to zero): decimal, `inf`/`infinity`, or a
/// hexadecimal float (`0x1.8p3`).
pub fn parse_double(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let sign = if negative { -1.0 } else { 1.0 };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    let (value, nonzero) = match body.get(..2) {
        Some(prefix) if prefix.eq_ignore_ascii_case("0x") => parse_hex(&body[2..])?,
        _ => parse_decimal(body)?,
    };
    // strtod's ERANGE: overflow, or a non-zero number that rounds to zero.
    if value.is_infinite() || (value == 0.0 && nonzero) {
        return None;
    }
    Some(sign * value)
}

/// `digits[.digits][e[sign]digits]` with a digit in the mantissa: its value, and whether the
/// mantissa has a non-zero digit.
fn parse_decimal(body: &str) -> Option<(f64, bool)> {
    let bytes = body.as_bytes();
    let mantissa_end = bytes
        .iter()
        .position(|b| *b == b'e' || *b == b'E')
        .unwrap_or(bytes.len());
    let mantissa = &bytes[..mantissa_end];
    let (int, frac) = match mantissa.iter().position(|b| *b == b'.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, &[][..]),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    if let Some(exponent) = bytes.get(mantissa_end + 1..) {
        let unsigned = exponent.strip_prefix(b"-").or(exponent.strip_prefix(b"+"));
        let unsigned = unsigned.unwrap_or(exponent);
        if unsigned.is_empty() || !digits(unsigned) {
            return None;
        }
    }
    let nonzero = mantissa.iter().any(|b| (b'1'..=b'9').contains(b));
    Some((body.parse().ok()?, nonzero))
}

/// The part of a hexadecimal float after `0x`: `hex[.hex][p[sign]digits]`, its value and
/// whether the mantissa has a non-zero digit. Rounded to nearest (twice for a subnormal
/// result, where strtod rounds once).
fn parse_hex(body: &str) -> Option<(f64, bool)> {
    let (mantissa, exponent) = match body.find(['p', 'P']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp2: i64 = match exponent {
        None => 0,
        Some(e) => {
            let unsigned = e.strip_prefix(['-', '+']).unwrap_or(e);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let magnitude = unsigned.parse::<i64>().unwrap_or(i64::MAX).min(100_000);
            if e.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    // 60 bits of mantissa and a sticky bit for what does not fit: enough to round right.
    let (mut bits, mut sticky, mut nonzero) = (0u64, false, false);
    for (digit, fraction) in int
        .chars()
        .map(|c| (c, false))
        .chain(frac.chars().map(|c| (c, true)))
    {
        let d = u64::from(digit.to_digit(16)?);
        nonzero |= d != 0;
        if bits < 1 << 56 {
            bits = bits * 16 + d;
            if fraction {
                exp2 -= 4;
            }
        } else {
            sticky |= d != 0;
            if !fraction {
                exp2 += 4;
            }
        }
    }
    let wide = (u128::from(bits) << 1) | u128::from(sticky);
    let mut value = wide as f64;
    let mut exp2 = exp2 - 1;
    // Scale in steps that stay exact while the value is normal.
    while exp2 > 0 && value.is_finite() {
        let step = exp2.min(1000);
        value *= 2f64.powi(step as i32);
        exp2 -= step;
    }
    while exp2 < 0 && value != 0.0 {
        let step = (-exp2).min(1000);
        value /= 2f64.powi(step as i32);
        exp2 += step;
    }
    Some((value, nonzero))
}

/// A score as a Redis reply carries it (RESP2 bulk text or a RESP3 double's text).
pub fn parse_score(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(pairs: &[(&'static str, f64)]) -> Vec<Scored> {
        pairs
            .iter()
            .map(|(m, s)| (Bytes::from_static(m.as_bytes()), *s))
            .collect()
    }

    fn query(weights: &[f64], aggregate: Aggregate) -> Query {
        Query {
            weights: weights.to_vec(),
            aggregate,
            withscores: true,
            limit: 0,
        }
    }

    fn names(result: &[Scored]) -> Vec<(String, String)> {
        result
            .iter()
            .map(|(m, s)| (String::from_utf8_lossy(m).into_owned(), format_double(*s)))
            .collect()
    }

    #[test]
    fn doubles_print_as_redis_prints_them() {
        // Expected values are C's printf("%.17g").
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-3.0, "-3"),
            (2.5, "2.5"),
            (0.1, "0.10000000000000001"),
            (1.1, "1.1000000000000001"),
            (0.3, "0.29999999999999999"),
            (1e20, "1e+20"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (1.5e-300, "1.5000000000000001e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "4.9406564584124654e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (9.999999999999999e16, "99999999999999984"),
        ];
        for (value, want) in cases {
            assert_eq!(format_double(*value), *want, "{value:e}");
        }
    }

    #[test]
    fn doubles_parse_as_redis_reads_them() {
        let ok: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+3", 3.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E-2", 0.01),
            ("inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("+INF", f64::INFINITY),
            ("0x10", 16.0),
            ("0x1.8p1", 3.0),
            ("-0X.8", -0.5),
            ("0x1p-2", 0.25),
            ("4.9406564584124654e-324", 5e-324),
            ("0", 0.0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_double(text.as_bytes()), Some(*want), "{text}");
        }
        for bad in [
            "", " 1", "1 ", "nan", "-nan", "x", "1e", "1e+", ".", "e5", "1.2.3", "1e400", "-1e400",
            "1e-400", "0x", "0x1p", "infin", "1,5", "0xg",
        ] {
            assert_eq!(parse_double(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(parse_double(b"-0").unwrap().is_sign_negative());
    }

    #[test]
    fn options_parse_and_fail_as_in_redis() {
        let words = |w: &[&'static str]| w.iter().map(|s| s.as_bytes()).collect::<Vec<_>>();
        let q = parse_options(
            ZOp::Union,
            2,
            &words(&["weights", "2", "inf", "AGGREGATE", "max", "WITHSCORES"]),
        )
        .unwrap();
        assert_eq!(q.weights, [2.0, f64::INFINITY]);
        assert_eq!((q.aggregate, q.withscores), (Aggregate::Max, true));
        let err = |op, n, w: &[&'static str]| parse_options(op, n, &words(w)).unwrap_err();
        assert_eq!(
            err(ZOp::Inter, 2, &["WEIGHTS", "1", "x"]),
            "ERR weight value is not a float"
        );
        // Too few weights: WEIGHTS is then not an option at all.
        assert_eq!(err(ZOp::Inter, 2, &["WEIGHTS", "1"]), "ERR syntax error");
        assert_eq!(
            err(ZOp::Union, 1, &["AGGREGATE", "avg"]),
            "ERR syntax error"
        );
        assert_eq!(err(ZOp::Diff, 1, &["WEIGHTS", "1"]), "ERR syntax error");
        assert_eq!(err(ZOp::InterCard, 1, &["WITHSCORES"]), "ERR syntax error");
        assert_eq!(
            err(ZOp::InterCard, 1, &["LIMIT", "-1"]),
            "ERR LIMIT can't be negative"
        );
        assert_eq!(
            err(ZOp::InterCard, 1, &["LIMIT", "x"]),
            "ERR LIMIT can't be negative"
        );
        let q = parse_options(ZOp::InterCard, 1, &words(&["LIMIT", "3", "limit", "5"])).unwrap();
        assert_eq!(q.limit, 5);
        assert!(parse_options(ZOp::Diff, 3, &words(&["withscores"])).is_ok());
    }

    #[test]
    fn union_weighs_then_aggregates_in_size_order() {
        let a = scored(&[("x", 1.0), ("y", 2.0), ("z", 0.0)]);
        let b = scored(&[("y", 3.0), ("w", f64::NEG_INFINITY)]);
        let inputs = [a, b];
        let sum = combine(ZOp::Union, &query(&[2.0, 1.0], Aggregate::Sum), &inputs);
        assert_eq!(
            names(&sum),
            [("w", "-inf"), ("z", "0"), ("x", "2"), ("y", "7")]
                .map(|(m, s)| (m.to_string(), s.to_string()))
        );
        // inf * 0 is NaN, which counts as 0; -inf + inf too.
        let inf = combine(
            ZOp::Union,
            &query(&[f64::INFINITY, f64::INFINITY], Aggregate::Sum),
            &inputs,
        );
        assert_eq!(
            names(&inf),
            [("w", "-inf"), ("z", "0"), ("x", "inf"), ("y", "inf")]
                .map(|(m, s)| (m.to_string(), s.to_string()))
        );
        let min = combine(ZOp::Union, &query(&[1.0, 1.0], Aggregate::Min), &inputs);
        assert_eq!(min[3], (Bytes::from_static(b"y"), 2.0));
        let max = combine(ZOp::Union, &query(&[1.0, -1.0], Aggregate::Max), &inputs);
        assert_eq!(max[2], (Bytes::from_static(b"y"), 2.0));
        assert_eq!(max[3], (Bytes::from_static(b"w"), f64::INFINITY));
    }

    #[test]
    fn ties_order_by_member_bytes() {
        let a = scored(&[("b", 1.0), ("a", 1.0), ("ab", 1.0), ("B", 1.0)]);
        let b = scored(&[("c", -0.0)]);
        let all = combine(
            ZOp::Union,
            &query(&[1.0, 1.0], Aggregate::Sum),
            &[a, b.clone()],
        );
        let order: Vec<&[u8]> = all.iter().map(|(m, _)| &m[..]).collect();
        assert_eq!(order, [&b"c"[..], b"B", b"a", b"ab", b"b"]);
        assert_eq!(format_double(all[0].1), "-0");
        // -0 and 0 are one score: their members order by bytes.
        let zero = scored(&[("a", 0.0)]);
        let tied = combine(ZOp::Union, &query(&[1.0, 1.0], Aggregate::Sum), &[b, zero]);
        assert_eq!(tied[0].0, Bytes::from_static(b"a"));
    }

    #[test]
    fn intersection_diff_and_count() {
        let a = scored(&[("x", 1.0), ("y", 2.0), ("z", 3.0)]);
        let b = scored(&[("y", 5.0), ("z", f64::NEG_INFINITY), ("q", 1.0)]);
        let c = scored(&[("z", 1.0), ("y", 1.0)]);
        let inputs = [a.clone(), b.clone(), c];
        let inter = combine(
            ZOp::Inter,
            &query(&[1.0, 1.0, 1.0], Aggregate::Sum),
            &inputs,
        );
        assert_eq!(
            names(&inter),
            [("z", "-inf"), ("y", "8")].map(|(m, s)| (m.to_string(), s.to_string()))
        );
        // MIN with a weight of 0 on -inf: NaN, which MIN ignores.
        let min = combine(
            ZOp::Inter,
            &query(&[1.0, 0.0, 1.0], Aggregate::Min),
            &inputs,
        );
        assert_eq!(
            names(&min),
            [("y", "0"), ("z", "1")].map(|(m, s)| (m.to_string(), s.to_string()))
        );
        assert_eq!(inter_card(&inputs, 0), 2);
        assert_eq!(inter_card(&inputs, 1), 1);
        assert_eq!(inter_card(&[a.clone(), Vec::new()], 0), 0);
        let diff = combine(
            ZOp::Diff,
            &query(&[1.0, 1.0], Aggregate::Sum),
            &[a.clone(), b],
        );
        assert_eq!(names(&diff), [("x".to_string(), "1".to_string())]);
        assert!(combine(
            ZOp::Diff,
            &query(&[1.0, 1.0], Aggregate::Sum),
            &[Vec::new(), a]
        )
        .is_empty());
    }

    #[test]
    fn replies_have_redis_shapes() {
        let result = scored(&[("a", 1.5), ("b", f64::INFINITY)]);
        assert_eq!(
            &encode_reply(&result, false, false)[..],
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            &encode_reply(&result, true, false)[..],
            b"*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$3\r\ninf\r\n"
        );
        assert_eq!(
            &encode_reply(&result, true, true)[..],
            b"*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,inf\r\n"
        );
        assert_eq!(&encode_reply(&[], true, true)[..], b"*0\r\n");
    }
}
