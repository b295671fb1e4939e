//! Codec micro-benchmarks: the per-request and per-reply work on the proxy's hot path.
//!
//! Decoding is measured on a fresh copy of the input each iteration (set up outside the timed
//! part), with one long-lived decoder, as a connection task would use it.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use slotgate::resp::{encode, Limits, ReplyDecoder, Request, RequestDecoder};
use slotgate::slot::Slot;

const VALUE: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

fn encoded(args: &[&[u8]]) -> Vec<u8> {
    Request::from_args(args.iter().map(|a| Bytes::copy_from_slice(a)))
        .raw()
        .to_vec()
}

/// Times decoding every request in `input`.
fn bench_requests(c: &mut Criterion, name: &str, input: &[u8], count: u64) {
    let mut group = c.benchmark_group("decode_request");
    group.throughput(Throughput::Elements(count));
    let mut decoder = RequestDecoder::new(Limits::default());
    group.bench_function(name, |b| {
        b.iter_batched(
            || BytesMut::from(input),
            |mut buf| {
                while let Some(req) = decoder.decode(&mut buf).unwrap() {
                    black_box(req);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn decode_requests(c: &mut Criterion) {
    let mut pipeline = Vec::new();
    for i in 0..16 {
        let key = format!("key:{i:03}");
        pipeline.extend(encoded(&[b"SET", key.as_bytes(), VALUE]));
    }
    bench_requests(c, "pipeline_16_set", &pipeline, 16);
    bench_requests(c, "get", &encoded(&[b"GET", b"key:000123"]), 1);
    let mut mget: Vec<Vec<u8>> = vec![b"MGET".to_vec()];
    mget.extend((0..10).map(|i| format!("key:{i:06}").into_bytes()));
    let mget: Vec<&[u8]> = mget.iter().map(Vec::as_slice).collect();
    bench_requests(c, "mget_10", &encoded(&mget), 1);
    bench_requests(c, "inline_get", b"GET key:000123\r\n", 1);
}

fn decode_replies(c: &mut Criterion) {
    let mut bulk = BytesMut::new();
    encode::bulk(&mut bulk, VALUE);
    let mut array = BytesMut::new();
    encode::array_header(&mut array, 10);
    for i in 0..10 {
        encode::bulk(&mut array, format!("value:{i:02}").as_bytes());
    }
    let mut group = c.benchmark_group("decode_reply");
    let mut decoder = ReplyDecoder::new(Limits::default());
    for (name, input) in [
        ("status_ok", &b"+OK\r\n"[..]),
        ("bulk_32", &bulk[..]),
        ("array_10", &array[..]),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(input),
                |mut buf| black_box(decoder.decode(&mut buf).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let args = [
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"key:000123"),
        Bytes::from_static(VALUE),
    ];
    group.bench_function("from_args_set", |b| {
        b.iter(|| Request::from_args(black_box(&args).iter().cloned()))
    });
    let mut out = BytesMut::with_capacity(1024);
    group.bench_function("bulk_32", |b| {
        b.iter(|| {
            out.clear();
            encode::bulk(&mut out, black_box(VALUE));
            black_box(&out);
        })
    });
    group.finish();
}

fn slot(c: &mut Criterion) {
    let mut group = c.benchmark_group("slot");
    group.bench_function("plain_key", |b| {
        b.iter(|| Slot::of(black_box(b"key:000123")))
    });
    group.bench_function("hash_tag_key", |b| {
        b.iter(|| Slot::of(black_box(b"{user1000}.following")))
    });
    // redis-benchmark's keys (`key:__rand_int__`) and a longer application key.
    group.bench_function("plain_key_16", |b| {
        b.iter(|| Slot::of(black_box(b"key:000000012345")))
    });
    group.bench_function("plain_key_40", |b| {
        b.iter(|| Slot::of(black_box(b"session:user:000000012345:cart:items:v2")))
    });
    group.finish();
}

criterion_group!(benches, decode_requests, decode_replies, encoding, slot);
criterion_main!(benches);
