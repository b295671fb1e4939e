use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn resp(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.freeze()
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

/// A flat array (RESP2) or a map (RESP3) of `pairs`.
fn pairs_of(pairs: Vec<(&str, Frame)>, map: bool) -> Frame {
    let flat = pairs.into_iter().flat_map(|(n, v)| [bulk(n), v]).collect();
    if map {
        Frame::Map(flat)
    } else {
        Frame::Array(flat)
    }
}

fn parsed(reply: &Bytes) -> Frame {
    parse_frame(reply, &limits()).unwrap()
}

/// The value of field `name` of a pairs reply.
fn field(reply: &Frame, name: &str) -> Frame {
    let items = reply.as_array().unwrap();
    items
        .chunks(2)
        .find(|p| p[0].as_bytes().map(|b| &b[..]) == Some(name.as_bytes()))
        .map(|p| p[1].clone())
        .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
}

fn function_stats_reply(running: Option<&str>, libraries: i64, map: bool) -> Bytes {
    let running = match (running, map) {
        (Some(name), _) => pairs_of(
            vec![
                ("name", bulk(name)),
                ("command", Frame::Array(vec![bulk("fcall"), bulk(name)])),
                ("duration_ms", int(7)),
            ],
            map,
        ),
        (None, true) => Frame::Nil,
        (None, false) => Frame::Null,
    };
    let engine = pairs_of(
        vec![
            ("libraries_count", int(libraries)),
            ("functions_count", int(libraries * 2)),
        ],
        map,
    );
    resp(&pairs_of(
        vec![
            ("running_script", running),
            ("engines", pairs_of(vec![("LUA", engine)], map)),
        ],
        map,
    ))
}

#[test]
fn function_stats_names_the_script_running_on_any_master() {
    for map in [false, true] {
        let idle = function_stats_reply(None, 2, map);
        let busy = function_stats_reply(Some("spin"), 2, map);
        assert_eq!(
            function_stats(&[idle.clone(), busy.clone(), idle.clone()], &limits()),
            busy
        );
        assert_eq!(
            function_stats(&[idle.clone(), idle.clone()], &limits()),
            idle
        );
        // Engines are the first master's.
        let other = function_stats_reply(None, 5, map);
        assert_eq!(function_stats(&[idle.clone(), other], &limits()), idle);
    }
    assert!(function_stats(&[Bytes::from_static(b":1\r\n")], &limits())
        .starts_with(b"-ERR slotgate: unexpected reply"));
}

#[test]
fn function_dump_is_the_one_payload_or_an_error() {
    let a = Bytes::from_static(b"$3\r\nabc\r\n");
    let b = Bytes::from_static(b"$3\r\nabd\r\n");
    assert_eq!(function_dump(&[a.clone(), a.clone(), a.clone()]), a);
    let err = function_dump(&[a.clone(), b]);
    assert!(
        err.starts_with(b"-ERR slotgate: the masters hold different function libraries"),
        "{err:?}"
    );
}

/// A MEMORY STATS reply with the numbers that matter to the merge.
fn memory_reply(n: [i64; 11], map: bool) -> Bytes {
    let [peak, total, startup, keys, dataset, allocated, active, resident, rss_over, frag, main] =
        n;
    let double = |v: &str| {
        if map {
            Frame::Double(Bytes::copy_from_slice(v.as_bytes()))
        } else {
            bulk(v)
        }
    };
    resp(&pairs_of(
        vec![
            ("peak.allocated", int(peak)),
            ("total.allocated", int(total)),
            ("startup.allocated", int(startup)),
            (
                "db.0",
                pairs_of(
                    vec![
                        ("overhead.hashtable.main", int(main)),
                        ("overhead.hashtable.expires", int(0)),
                    ],
                    map,
                ),
            ),
            ("keys.count", int(keys)),
            ("keys.bytes-per-key", int(1)),
            ("dataset.bytes", int(dataset)),
            ("dataset.percentage", double("1.5")),
            ("peak.percentage", double("1.5")),
            ("allocator.allocated", int(allocated)),
            ("allocator.active", int(active)),
            ("allocator.resident", int(resident)),
            ("allocator-fragmentation.ratio", double("1.5")),
            ("allocator-rss.ratio", double("1.5")),
            ("rss-overhead.ratio", double("1.5")),
            ("rss-overhead.bytes", int(rss_over)),
            ("fragmentation", double("1.5")),
            ("fragmentation.bytes", int(frag)),
            (
                "some.other.ratio",
                double(if peak > 2000 { "3.25" } else { "1.5" }),
            ),
        ],
        map,
    ))
}

fn as_f64(frame: &Frame) -> f64 {
    match frame {
        Frame::Bulk(t) | Frame::Double(t) => std::str::from_utf8(t).unwrap().parse().unwrap(),
        other => panic!("not a double: {other:?}"),
    }
}

#[test]
fn memory_stats_sums_bytes_and_computes_ratios_again() {
    for map in [false, true] {
        let a = memory_reply(
            [2000, 1500, 500, 10, 800, 1000, 1200, 2400, 1200, 2000, 72],
            map,
        );
        let b = memory_reply(
            [3000, 2500, 500, 30, 1600, 2000, 2200, 4400, 800, 3000, 200],
            map,
        );
        let merged = parsed(&memory_stats(&[a, b], &limits()));
        assert_eq!(matches!(merged, Frame::Map(_)), map);
        assert_eq!(field(&merged, "peak.allocated"), int(5000));
        assert_eq!(field(&merged, "total.allocated"), int(4000));
        assert_eq!(field(&merged, "keys.count"), int(40));
        assert_eq!(field(&merged, "dataset.bytes"), int(2400));
        // (4000 - 1000) / 40
        assert_eq!(field(&merged, "keys.bytes-per-key"), int(75));
        let db = field(&merged, "db.0");
        assert_eq!(field(&db, "overhead.hashtable.main"), int(272));
        let close = |name: &str, want: f64| {
            let got = as_f64(&field(&merged, name));
            assert!((got - want).abs() < 1e-4, "{name}: {got} != {want}");
        };
        close("dataset.percentage", 2400.0 * 100.0 / 3000.0);
        close("peak.percentage", 4000.0 * 100.0 / 5000.0);
        close("allocator-fragmentation.ratio", 3400.0 / 3000.0);
        close("allocator-rss.ratio", 6800.0 / 3400.0);
        // rss = resident + rss-overhead.bytes = 8800
        close("rss-overhead.ratio", 8800.0 / 6800.0);
        close("fragmentation", 8800.0 / (8800.0 - 5000.0));
        // A double the merge cannot compute again: the largest.
        close("some.other.ratio", 3.25);
        if map {
            assert!(matches!(field(&merged, "fragmentation"), Frame::Double(_)));
        } else {
            assert!(matches!(field(&merged, "fragmentation"), Frame::Bulk(_)));
        }
    }
}

#[test]
fn memory_stats_of_one_master_is_its_own() {
    let a = memory_reply(
        [2000, 1500, 500, 10, 800, 1000, 1200, 2400, 1200, 2000, 72],
        false,
    );
    let merged = parsed(&memory_stats(std::slice::from_ref(&a), &limits()));
    let own = parsed(&a);
    for name in [
        "peak.allocated",
        "keys.count",
        "db.0",
        "fragmentation.bytes",
    ] {
        assert_eq!(field(&merged, name), field(&own, name), "{name}");
    }
    // 1.5 everywhere in the fixture; the merge computes the real ratio from the bytes.
    assert_eq!(
        field(&merged, "allocator-fragmentation.ratio"),
        bulk("1.2000000476837158")
    );
}

fn array(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

#[test]
fn latency_latest_takes_the_latest_sample_and_the_highest_max() {
    let event =
        |name: &str, time, latest, max| array(vec![bulk(name), int(time), int(latest), int(max)]);
    let a = resp(&array(vec![
        event("command", 100, 20, 50),
        event("fork", 90, 3, 3),
    ]));
    let b = resp(&array(vec![
        event("command", 120, 10, 40),
        event("expire-cycle", 95, 7, 9),
    ]));
    let merged = latency_latest(&[a, b, resp(&array(vec![]))], &limits());
    assert_eq!(
        merged,
        resp(&array(vec![
            event("command", 120, 10, 50),
            event("fork", 90, 3, 3),
            event("expire-cycle", 95, 7, 9),
        ]))
    );
    assert_eq!(
        latency_latest(&[resp(&array(vec![]))], &limits()),
        Bytes::from_static(b"*0\r\n")
    );
}

#[test]
fn latency_history_interleaves_samples_by_time() {
    let sample = |time, latency| array(vec![int(time), int(latency)]);
    let a = resp(&array(vec![sample(10, 5), sample(12, 7)]));
    let b = resp(&array(vec![sample(11, 3), sample(12, 9)]));
    assert_eq!(
        latency_history(&[a, b], &limits()),
        resp(&array(vec![sample(10, 5), sample(11, 3), sample(12, 9)]))
    );
    // At most 160 samples: the newest.
    let many = resp(&array((0..150).map(|t| sample(t, 1)).collect()));
    let later = resp(&array((150..200).map(|t| sample(t, 2)).collect()));
    let merged = parsed(&latency_history(&[many, later], &limits()));
    let items = merged.as_array().unwrap();
    assert_eq!(items.len(), 160);
    assert_eq!(items[0], sample(40, 1));
    assert_eq!(items[159], sample(199, 2));
}

/// A command's name, calls and (bucket, cumulative count) steps.
type Entry<'a> = (&'a str, i64, Vec<(i64, i64)>);

fn histogram_reply(commands: Vec<Entry>, map: bool) -> Bytes {
    let entries = commands
        .into_iter()
        .map(|(name, calls, buckets)| {
            let flat: Vec<Frame> = buckets
                .into_iter()
                .flat_map(|(b, c)| [int(b), int(c)])
                .collect();
            let buckets = if map {
                Frame::Map(flat)
            } else {
                Frame::Array(flat)
            };
            (
                name,
                pairs_of(
                    vec![("calls", int(calls)), ("histogram_usec", buckets)],
                    map,
                ),
            )
        })
        .collect();
    resp(&pairs_of(entries, map))
}

#[test]
fn latency_histogram_sums_cumulative_counts_per_bucket() {
    for map in [false, true] {
        let a = histogram_reply(
            vec![("set", 10, vec![(1, 4), (4, 10)]), ("get", 2, vec![(2, 2)])],
            map,
        );
        let b = histogram_reply(vec![("set", 5, vec![(2, 3), (8, 5)])], map);
        assert_eq!(
            latency_histogram(&[a, b], &limits()),
            histogram_reply(
                vec![
                    ("set", 15, vec![(1, 4), (2, 7), (4, 13), (8, 15)]),
                    ("get", 2, vec![(2, 2)]),
                ],
                map
            )
        );
    }
    let empty = histogram_reply(vec![], false);
    assert_eq!(
        latency_histogram(&[empty.clone(), empty.clone()], &limits()),
        empty
    );
}

#[test]
fn node_text_labels_each_node() {
    let nodes: Vec<std::sync::Arc<str>> = vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()];
    let a = resp(&bulk("all good\n"));
    let b = Bytes::from_static(b"-ERR No samples available for event 'x'\r\n");
    let text = node_text(&nodes, &[a.clone(), b.clone()], &limits());
    assert_eq!(
        parsed(&text),
        bulk(
            "--- 127.0.0.1:7000 ---\nall good\n\n--- 127.0.0.1:7001 ---\n(error) ERR No samples \
             available for event 'x'\n"
        )
    );
    // Every node refusing: its error.
    assert_eq!(node_text(&nodes, &[b.clone(), b.clone()], &limits()), b);
    let verbatim = resp(&Frame::Verbatim(
        Bytes::from_static(b"txt"),
        Bytes::from_static(b"ok"),
    ));
    let text = parsed(&node_text(&nodes, &[verbatim.clone(), verbatim], &limits()));
    assert_eq!(
        text,
        Frame::Verbatim(
            Bytes::from_static(b"txt"),
            Bytes::from_static(b"--- 127.0.0.1:7000 ---\nok\n\n--- 127.0.0.1:7001 ---\nok\n")
        )
    );
}

#[test]
fn background_saves_agree_or_say_what_holds_them_back() {
    let started = Bytes::from_static(b"+Background saving started\r\n");
    let scheduled = Bytes::from_static(b"+Background saving scheduled\r\n");
    let busy = Bytes::from_static(b"-ERR Background save already in progress\r\n");
    assert_eq!(background(&[started.clone(), started.clone()]), started);
    assert_eq!(
        background(&[started.clone(), scheduled.clone(), started.clone()]),
        scheduled
    );
    assert_eq!(
        background(&[started.clone(), busy.clone(), scheduled]),
        busy
    );
    assert!(background(&[]).starts_with(b"-ERR"));
}
