//! LCS computed by the proxy from the two strings, the way Redis 7.0 computes it (`lcsCommand`
//! in t_string.c): the same table, the same walk back through it, so IDX reports the same
//! ranges. Pure: no I/O.

use bytes::{Bytes, BytesMut};

use crate::resp::encode;

/// Redis' `proto-max-bulk-len` default, which bounds the table Redis allocates (4 bytes a
/// cell).
const MAX_TABLE_BYTES: u64 = 512 * 1024 * 1024;

/// LCS's options after the two keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// LEN: the length only.
    pub len: bool,
    /// IDX: the matching ranges and the length.
    pub idx: bool,
    /// WITHMATCHLEN: each range with its length.
    pub withmatchlen: bool,
    /// MINMATCHLEN: ranges shorter than this are left out (0: none).
    pub minmatchlen: u64,
}

/// The options in `args` (what follows the keys), or the error Redis answers for them once
/// both keys hold strings.
pub fn parse_options(args: &[&[u8]]) -> Result<Options, &'static str> {
    let mut options = Options::default();
    let mut j = 0;
    while let Some(option) = args.get(j) {
        let is = |name: &str| option.eq_ignore_ascii_case(name.as_bytes());
        if is("idx") {
            options.idx = true;
        } else if is("len") {
            options.len = true;
        } else if is("withmatchlen") {
            options.withmatchlen = true;
        } else if is("minmatchlen") && j + 1 < args.len() {
            let n = crate::resp::parse_int(args[j + 1])
                .ok_or("ERR value is not an integer or out of range")?;
            options.minmatchlen = u64::try_from(n).unwrap_or(0);
            j += 1;
        } else {
            return Err("ERR syntax error");
        }
        j += 1;
    }
    if options.len && options.idx {
        return Err("ERR If you want both the length and indexes, please just use IDX.");
    }
    Ok(options)
}

/// The reply to LCS of `a` and `b` with `options`: the common subsequence, its length (LEN),
/// or the ranges and the length (IDX; a map for a RESP3 client).
pub fn reply(a: &[u8], b: &[u8], options: &Options, resp3: bool) -> Bytes {
    let mut out = BytesMut::new();
    if a.len() as u64 >= u64::from(u32::MAX - 1) || b.len() as u64 >= u64::from(u32::MAX - 1) {
        encode::error(&mut out, "ERR String too long for LCS");
        return out.freeze();
    }
    let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
    if cells * 4 > MAX_TABLE_BYTES {
        encode::error(
            &mut out,
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
        return out.freeze();
    }
    let table = Table::new(a, b);
    let length = table.at(a.len(), b.len());
    if options.len && !options.idx {
        encode::integer(&mut out, i64::from(length));
        return out.freeze();
    }
    let (common, ranges) = table.walk(a, b, options.minmatchlen);
    if !options.idx {
        encode::bulk(&mut out, &common);
        return out.freeze();
    }
    if resp3 {
        encode::map_header(&mut out, 2);
    } else {
        encode::array_header(&mut out, 4);
    }
    encode::bulk(&mut out, b"matches");
    encode::array_header(&mut out, ranges.len());
    for range in &ranges {
        encode::array_header(&mut out, 2 + usize::from(options.withmatchlen));
        for (start, end) in [(range.a_start, range.a_end), (range.b_start, range.b_end)] {
            encode::array_header(&mut out, 2);
            encode::integer(&mut out, i64::from(start));
            encode::integer(&mut out, i64::from(end));
        }
        if options.withmatchlen {
            encode::integer(&mut out, i64::from(range.a_end - range.a_start + 1));
        }
    }
    encode::bulk(&mut out, b"len");
    encode::integer(&mut out, i64::from(length));
    out.freeze()
}

/// One matching range: `a[a_start..=a_end]` equals `b[b_start..=b_end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    a_start: u32,
    a_end: u32,
    b_start: u32,
    b_end: u32,
}

/// LCS(i, j): the length of the longest common subsequence of `a[..i]` and `b[..j]`.
struct Table {
    cells: Vec<u32>,
    width: usize,
}

impl Table {
    fn new(a: &[u8], b: &[u8]) -> Table {
        let width = b.len() + 1;
        let mut cells = vec![0u32; (a.len() + 1) * width];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                cells[i * width + j] = if a[i - 1] == b[j - 1] {
                    cells[(i - 1) * width + j - 1] + 1
                } else {
                    cells[(i - 1) * width + j].max(cells[i * width + j - 1])
                };
            }
        }
        Table { cells, width }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.width + j]
    }

    /// The common subsequence and the ranges of at least `minmatchlen` (from the end of the
    /// strings backwards), walking the table back as Redis does.
    fn walk(&self, a: &[u8], b: &[u8], minmatchlen: u64) -> (Vec<u8>, Vec<Range>) {
        let mut common = vec![0u8; self.at(a.len(), b.len()) as usize];
        let mut left = common.len();
        let mut ranges = Vec::new();
        // `None`: no range open (Redis marks it with `arange_start == alen`).
        let mut open: Option<Range> = None;
        let (mut i, mut j) = (a.len(), b.len());
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                common[left - 1] = a[i - 1];
                let (ai, bj) = ((i - 1) as u32, (j - 1) as u32);
                match &mut open {
                    None => {
                        open = Some(Range {
                            a_start: ai,
                            a_end: ai,
                            b_start: bj,
                            b_end: bj,
                        })
                    }
                    Some(r) if r.a_start == ai + 1 && r.b_start == bj + 1 => {
                        r.a_start = ai;
                        r.b_start = bj;
                    }
                    Some(_) => emit = true,
                }
                if open.is_some_and(|r| r.a_start == 0 || r.b_start == 0) {
                    emit = true;
                }
                left -= 1;
                i -= 1;
                j -= 1;
            } else {
                if self.at(i - 1, j) > self.at(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                emit |= open.is_some();
            }
            if emit {
                if let Some(range) = open.take() {
                    let len = u64::from(range.a_end - range.a_start + 1);
                    if minmatchlen == 0 || len >= minmatchlen {
                        ranges.push(range);
                    }
                }
            }
        }
        (common, ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&'static str]) -> Vec<&'static [u8]> {
        w.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn plain_len_and_idx_as_redis_answers() {
        // The example of Redis' documentation.
        let (a, b) = (b"ohmytext", b"mynewtext");
        let plain = Options::default();
        assert_eq!(&reply(a, b, &plain, false)[..], b"$6\r\nmytext\r\n");
        let len = parse_options(&words(&["LEN"])).unwrap();
        assert_eq!(&reply(a, b, &len, false)[..], b":6\r\n");
        let idx = parse_options(&words(&["IDX"])).unwrap();
        assert_eq!(
            &reply(a, b, &idx, false)[..],
            &b"*4\r\n$7\r\nmatches\r\n*2\r\n\
               *2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n\
               *2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n\
               $3\r\nlen\r\n:6\r\n"[..]
        );
        let min = parse_options(&words(&["idx", "minmatchlen", "4", "WITHMATCHLEN"])).unwrap();
        assert_eq!(
            &reply(a, b, &min, true)[..],
            &b"%2\r\n$7\r\nmatches\r\n*1\r\n\
               *3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
               $3\r\nlen\r\n:6\r\n"[..]
        );
        assert_eq!(&reply(b"", b"abc", &plain, false)[..], b"$0\r\n\r\n");
    }

    #[test]
    fn options_fail_as_in_redis() {
        let err = |w: &[&'static str]| parse_options(&words(w)).unwrap_err();
        assert_eq!(
            err(&["LEN", "IDX"]),
            "ERR If you want both the length and indexes, please just use IDX."
        );
        assert_eq!(err(&["MINMATCHLEN"]), "ERR syntax error");
        assert_eq!(err(&["NOPE"]), "ERR syntax error");
        assert_eq!(
            err(&["MINMATCHLEN", "x"]),
            "ERR value is not an integer or out of range"
        );
        let negative = parse_options(&words(&["MINMATCHLEN", "-3"])).unwrap();
        assert_eq!(negative.minmatchlen, 0);
    }
}
