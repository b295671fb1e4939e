//! Property tests across the codec: whatever is encoded decodes back to the same thing, however
//! the bytes are cut into reads, and no input at all makes a decoder panic.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::{
    parse_frame, Frame, Limits, ParseError, ReplyDecoder, ReplyKind, Request, RequestDecoder,
};

/// Tight limits, so random input reaches the limit checks too.
const SMALL: Limits = Limits {
    max_bulk_len: 24,
    max_multibulk_len: 6,
    max_inline_len: 20,
    max_depth: 3,
    max_request_len: 120,
};

/// Bytes that tend to matter to the grammar, mixed with anything at all.
fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..24),
        vec(prop::sample::select(b"\r\n$*:+-\"'\\ 0a".to_vec()), 0..12),
    ]
}

/// How one request is written on the wire.
#[derive(Clone, Debug)]
enum Wire {
    Multibulk,
    Inline,
    /// An empty request (`*0`, `*-1`, a blank line) the decoder must skip, then a multibulk.
    AfterEmpty(&'static [u8]),
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        3 => Just(Wire::Multibulk),
        2 => Just(Wire::Inline),
        1 => prop::sample::select(vec![&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"\n", b"  \t\r\n"])
            .prop_map(Wire::AfterEmpty),
    ]
}

/// An inline line for `args` that splits back to exactly `args`: every argument quoted, every
/// byte that is not plainly printable written as `\xHH`.
fn inline_line(args: &[Vec<u8>]) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.push(b'"');
        for &b in a {
            if b.is_ascii_alphanumeric() {
                line.push(b);
            } else {
                line.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        line.push(b'"');
    }
    line.extend_from_slice(b"\r\n");
    line
}

fn frame() -> impl Strategy<Value = Frame> {
    let line = || {
        vec(any::<u8>(), 0..16).prop_map(|mut v| {
            v.retain(|&b| b != b'\r' && b != b'\n');
            Bytes::from(v)
        })
    };
    let leaf = prop_oneof![
        line().prop_map(Frame::Simple),
        line().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        arg().prop_map(|v| Frame::Bulk(Bytes::from(v))),
        Just(Frame::Null),
        Just(Frame::NullArray),
        Just(Frame::Nil),
        any::<bool>().prop_map(Frame::Boolean),
        any::<f64>().prop_map(|d| Frame::Double(Bytes::from(d.to_string()))),
        any::<u64>().prop_map(|n| Frame::BigNumber(Bytes::from(format!("{n}0")))),
        arg().prop_map(|v| Frame::BlobError(Bytes::from(v))),
        arg().prop_map(|v| Frame::Verbatim(Bytes::from_static(b"txt"), Bytes::from(v))),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            vec((inner.clone(), inner), 0..4).prop_map(|pairs| Frame::Map(
                pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
            )),
        ]
    })
}

fn kind_of(frame: &Frame) -> ReplyKind {
    match frame {
        Frame::Simple(_) => ReplyKind::Status,
        Frame::Error(_) => ReplyKind::Error,
        Frame::Integer(_) => ReplyKind::Integer,
        Frame::Bulk(_) => ReplyKind::Bulk,
        Frame::Null => ReplyKind::NullBulk,
        Frame::Array(_) => ReplyKind::Array,
        Frame::NullArray => ReplyKind::NullArray,
        Frame::Nil => ReplyKind::Null,
        Frame::Boolean(_) => ReplyKind::Boolean,
        Frame::Double(_) => ReplyKind::Double,
        Frame::BigNumber(_) => ReplyKind::BigNumber,
        Frame::BlobError(_) => ReplyKind::BlobError,
        Frame::Verbatim(..) => ReplyKind::Verbatim,
        Frame::Map(_) => ReplyKind::Map,
        Frame::Set(_) => ReplyKind::Set,
        Frame::Push(_) => ReplyKind::Push,
    }
}

/// Everything a decoder produced from one stream: the frames, then the error if one ended it.
type Outcome = (Vec<Bytes>, Option<ParseError>);

/// Feeds `input` to `decode` in reads of the given sizes (cycled), calling it until it wants
/// more after each read, as a connection task would.
fn feed<T>(
    input: &[u8],
    chunks: &[usize],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, ParseError>,
    raw: impl Fn(&T) -> Bytes,
) -> (Vec<T>, Option<ParseError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = buf.len();
            match decode(&mut buf) {
                Ok(Some(item)) => {
                    // A request or reply always consumes bytes.
                    assert!(buf.len() < before && !raw(&item).is_empty());
                    out.push(item);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn requests(input: &[u8], chunks: &[usize], limits: Limits) -> (Vec<Request>, Option<ParseError>) {
    let mut d = RequestDecoder::new(limits);
    feed(input, chunks, |b| d.decode(b), |r| r.raw().clone())
}

fn replies(
    input: &[u8],
    chunks: &[usize],
    limits: Limits,
) -> (Vec<super::Reply>, Option<ParseError>) {
    let mut d = ReplyDecoder::new(limits);
    feed(input, chunks, |b| d.decode(b), |r| r.raw().clone())
}

fn outcome<T>(res: (Vec<T>, Option<ParseError>), raw: impl Fn(&T) -> Bytes) -> Outcome {
    (res.0.iter().map(raw).collect(), res.1)
}

/// Streams built from grammar fragments reach far more decoder states than uniform bytes.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        &b"*"[..],
        b"$",
        b":",
        b"+",
        b"-",
        b"\r\n",
        b"\r",
        b"\n",
        b"0",
        b"1",
        b"3",
        b"-1",
        b"-2",
        b"99",
        b"abc",
        b"\"",
        b"'",
        b"\\",
        b" ",
        b"\\x4",
        b"*2\r\n",
        b"$3\r\n",
        b"*1\r\n",
        b"\0",
        b"\xff",
        b"9223372036854775808",
    ]);
    prop_oneof![
        vec(any::<u8>(), 0..128),
        vec(token, 0..48).prop_map(|t| t.concat()),
    ]
}

proptest! {
    #[test]
    fn requests_survive_any_chunking(
        reqs in vec((vec(arg(), 1..6), wire()), 1..8),
        chunks in vec(1usize..24, 1..16),
    ) {
        let mut input = Vec::new();
        let mut want = Vec::new();
        for (args, wire) in &reqs {
            let encoded = Request::from_args(args.iter().cloned().map(Bytes::from));
            match wire {
                Wire::Multibulk => input.extend_from_slice(encoded.raw()),
                Wire::Inline => input.extend(inline_line(args)),
                Wire::AfterEmpty(empty) => {
                    input.extend_from_slice(empty);
                    input.extend_from_slice(encoded.raw());
                }
            }
            want.push(encoded);
        }
        let (got, err) = requests(&input, &chunks, Limits::default());
        prop_assert_eq!(err, None);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g.raw(), w.raw());
            prop_assert_eq!(g.args(), w.args());
            // Any run of arguments, as a sub-request copies it, is their encoding.
            let args = g.args();
            for i in 0..args.len() {
                for j in i + 1..=args.len() {
                    let mut each = Vec::new();
                    for a in &args[i..j] {
                        each.extend(format!("${}\r\n", a.len()).bytes());
                        each.extend_from_slice(a);
                        each.extend_from_slice(b"\r\n");
                    }
                    prop_assert_eq!(g.encoded_args(i..j), Some(&each[..]));
                }
            }
            prop_assert_eq!(g.encoded_args(0..0), None);
            prop_assert_eq!(g.encoded_args(0..args.len() + 1), None);
        }
    }

    #[test]
    fn replies_survive_any_chunking(
        frames in vec(frame(), 1..6),
        chunks in vec(1usize..24, 1..16),
    ) {
        let mut encoded = Vec::new();
        let mut input = Vec::new();
        for f in &frames {
            let mut out = BytesMut::new();
            f.encode(&mut out);
            input.extend_from_slice(&out);
            encoded.push(out.freeze());
        }
        let limits = Limits::default();
        let (got, err) = replies(&input, &chunks, limits);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got.len(), frames.len());
        for ((reply, frame), raw) in got.iter().zip(&frames).zip(&encoded) {
            prop_assert_eq!(reply.raw(), raw);
            prop_assert_eq!(reply.kind(), kind_of(frame));
            prop_assert_eq!(&parse_frame(reply.raw(), &limits)?, frame);
        }
    }

    #[test]
    fn garbage_never_panics_and_chunking_never_matters(
        input in garbage(),
        chunks in vec(1usize..16, 1..8),
        small in any::<bool>(),
    ) {
        let limits = if small { SMALL } else { Limits::default() };
        let raw_req = |r: &Request| r.raw().clone();
        let raw_rep = |r: &super::Reply| r.raw().clone();
        let whole = outcome(requests(&input, &[input.len().max(1)], limits), raw_req);
        let cut = outcome(requests(&input, &chunks, limits), raw_req);
        prop_assert_eq!(&whole, &cut);
        // Whatever was accepted is a well-formed multibulk that decodes to itself.
        for raw in &whole.0 {
            let again = requests(raw, &[raw.len()], Limits::default());
            prop_assert_eq!(again.0.len(), 1);
            prop_assert_eq!(again.0[0].raw(), raw);
        }
        let whole = outcome(replies(&input, &[input.len().max(1)], limits), raw_rep);
        let cut = outcome(replies(&input, &chunks, limits), raw_rep);
        prop_assert_eq!(&whole, &cut);
        for raw in &whole.0 {
            prop_assert!(parse_frame(raw, &limits).is_ok());
        }
        let _ = parse_frame(&Bytes::from(input), &limits);
    }
}
