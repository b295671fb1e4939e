//! The reply queue's tests: order, unwritten bytes, the slow log, the write hold (with a
//! property test against a model of it).
use super::hold::HOLD_LIMIT;
use super::*;

/// Every ready reply at the front, taken in order.
fn take_replies(q: &ReplyQueue) -> Vec<Bytes> {
    std::iter::from_fn(|| q.pop_ready().map(|(reply, _)| reply)).collect()
}

/// Two reads of two requests each, their ends marked as the session marks them.
fn two_reads_of_two(q: &Rc<ReplyQueue>) -> [ReplyTarget; 4] {
    let (a, b) = (q.reserve(), q.reserve());
    q.end_batch();
    let (c, d) = (q.reserve(), q.reserve());
    q.end_batch();
    [a, b, c, d]
}

#[test]
fn replies_leave_in_request_order() {
    let q = ReplyQueue::new();
    let a = q.reserve();
    let b = q.reserve();
    q.push_ready(Bytes::from_static(b"+c\r\n"));
    b.fill(Bytes::from_static(b"+b\r\n"));
    assert_eq!(q.pop_ready(), None, "a has not answered yet");
    a.fill(Bytes::from_static(b"+a\r\n"));
    let got = take_replies(&q);
    assert_eq!(got, [&b"+a\r\n"[..], b"+b\r\n", b"+c\r\n"]);
    assert_eq!(q.outstanding(), 0);
}

#[test]
fn unwritten_bytes_count_until_written() {
    let q = ReplyQueue::new();
    let a = q.reserve();
    q.push_ready(Bytes::from_static(b"+later\r\n"));
    assert_eq!(q.unwritten(), 8);
    a.fill(Bytes::from_static(b"+ok\r\n"));
    assert_eq!((q.unwritten(), q.front_seq(), q.next_seq()), (13, 0, 2));
    let taken: usize = std::iter::from_fn(|| q.pop_ready())
        .map(|(r, _)| r.len())
        .sum();
    assert_eq!(
        (q.unwritten(), q.front_seq()),
        (13, 2),
        "taken, not written"
    );
    q.written(taken);
    assert_eq!(q.unwritten(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn messages_over_the_limit_cut_the_client_off() {
    let limit = OutputLimit {
        hard: 20,
        soft: 0,
        soft_for: std::time::Duration::ZERO,
    };
    let q = ReplyQueue::new();
    q.push_message(Bytes::from_static(b"+0123456789\r\n"), &limit);
    assert_eq!(q.unwritten(), 13);
    q.push_message(Bytes::from_static(b"+0123456789\r\n"), &limit);
    assert_eq!(
        q.unwritten(),
        13,
        "the message that would cross it is dropped"
    );
    assert_eq!(
        q.cut_off().await,
        Overflow {
            bytes: 26,
            limit: 20,
            soft: false
        }
    );
    q.push_message(Bytes::from_static(b"+x\r\n"), &limit);
    assert_eq!(q.outstanding(), 1, "nothing more after the cut");
}

#[test]
fn places_keep_the_command_they_were_tagged_with() {
    let q = ReplyQueue::new();
    q.push_ready(Bytes::from_static(b"-ERR protocol\r\n"));
    q.set_command(7);
    let a = q.reserve();
    q.set_command(9);
    q.push_ready(Bytes::from_static(b"+b\r\n"));
    a.fill(Bytes::from_static(b"+a\r\n"));
    let tags: Vec<_> = std::iter::from_fn(|| q.pop_ready().map(|(_, c)| c)).collect();
    assert_eq!(tags, [crate::command::stat_index::OTHER, 7, 9]);
}

#[test]
fn answers_slower_than_the_threshold_are_kept_for_the_slow_log() {
    let q = ReplyQueue::with_slow_log(Some(Duration::from_millis(10)));
    let read = Instant::now();
    q.set_read_at(read);
    let (slow, fast, untimed) = (q.reserve(), q.reserve(), q.reserve());
    let request = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
    slow.answer(
        Bytes::from_static(b"+a\r\n"),
        &request,
        read + Duration::from_millis(12),
    );
    fast.answer(
        Bytes::from_static(b"+b\r\n"),
        &request,
        read + Duration::from_millis(9),
    );
    untimed.fill(Bytes::from_static(b"+c\r\n"));
    q.push_answer(Bytes::from_static(b"+d\r\n"), &request);
    assert!(q.kept_slow());
    assert_eq!(
        q.take_slow(),
        vec![(Duration::from_millis(12), request.clone())]
    );
    assert!(!q.kept_slow(), "taken once");
    assert!(q.take_slow().is_empty(), "taken once");
    assert_eq!(q.outstanding(), 4);

    let off = ReplyQueue::new();
    let place = off.reserve();
    place.answer(
        Bytes::from_static(b"+a\r\n"),
        &request,
        read + Duration::from_secs(9),
    );
    assert!(!off.kept_slow(), "the slow log is off");
    assert!(off.take_slow().is_empty(), "the slow log is off");
}

/// Whether the session would be woken now (lowers the signal, as its wait does).
fn woken(q: &ReplyQueue) -> bool {
    use futures_util::FutureExt;
    q.wait_ready().now_or_never().is_some()
}

#[test]
fn a_read_s_replies_are_held_until_the_last_is_in() {
    let q = ReplyQueue::new();
    let (a, b, c) = (q.reserve(), q.reserve(), q.reserve());
    q.end_batch();
    a.fill(Bytes::from_static(b"+a\r\n"));
    assert!(q.holding(), "b and c are still owed");
    assert!(woken(&q), "the front is ready: the session times the hold");
    c.fill(Bytes::from_static(b"+c\r\n"));
    assert!(q.holding() && !woken(&q), "b is still owed");
    b.fill(Bytes::from_static(b"+b\r\n"));
    assert!(!q.holding(), "the read is answered");
    assert!(woken(&q));
    let got = take_replies(&q);
    assert_eq!(got, [&b"+a\r\n"[..], b"+b\r\n", b"+c\r\n"]);
    assert!(!q.holding());
}

#[test]
fn a_finished_read_is_not_held_for_the_next_one() {
    let q = ReplyQueue::new();
    let [a, b, c, d] = two_reads_of_two(&q);
    b.fill(Bytes::from_static(b"+b\r\n"));
    c.fill(Bytes::from_static(b"+c\r\n"));
    assert!(q.holding(), "a is owed");
    a.fill(Bytes::from_static(b"+a\r\n"));
    assert!(
        !q.holding(),
        "the first read is answered; the second's d is owed"
    );
    assert!(woken(&q));
    let got = take_replies(&q);
    assert_eq!(got.len(), 3, "a, b and c go out together");
    assert!(q.holding(), "the second read still owes d");
    d.fill(Bytes::from_static(b"+d\r\n"));
    assert!(!q.holding() && woken(&q));
}

#[test]
fn reads_without_a_recorded_end_are_not_held() {
    let q = ReplyQueue::new();
    let (a, _b) = (q.reserve(), q.reserve());
    a.fill(Bytes::from_static(b"+a\r\n"));
    assert!(
        !q.holding() && woken(&q),
        "no end_batch: written as it comes"
    );
    let answered = ReplyQueue::new();
    answered.push_ready(Bytes::from_static(b"+PONG\r\n"));
    answered.push_ready(Bytes::from_static(b"+PONG\r\n"));
    answered.end_batch();
    assert!(!answered.holding(), "a read answered at once is not held");
}

#[test]
fn a_released_hold_lets_every_read_so_far_go() {
    let q = ReplyQueue::new();
    let [a, _b, c, _d] = two_reads_of_two(&q);
    a.fill(Bytes::from_static(b"+a\r\n"));
    assert!(q.holding() && q.front_ready());
    q.release_hold();
    assert!(!q.holding(), "b is slow: a goes without it");
    assert_eq!(
        q.pop_ready().map(|(r, _)| r).as_deref(),
        Some(&b"+a\r\n"[..])
    );
    c.fill(Bytes::from_static(b"+c\r\n"));
    assert!(!q.holding(), "the second read was released too");
    let (e, _f) = (q.reserve(), q.reserve());
    q.end_batch();
    e.fill(Bytes::from_static(b"+e\r\n"));
    assert!(q.holding(), "a read after the release is held again");
}

#[test]
fn replies_past_the_hold_limit_go_out_at_once() {
    let q = ReplyQueue::new();
    let (a, _b) = (q.reserve(), q.reserve());
    q.end_batch();
    a.fill(Bytes::from(vec![b'x'; HOLD_LIMIT]));
    assert!(!q.holding(), "{HOLD_LIMIT} bytes wait: write them");
    assert!(woken(&q));
}

use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A read of this many requests, all sent to backends.
    Read(usize),
    /// The reply to the n-th (mod count) request still owed.
    Fill(usize),
    /// The session's write turn.
    Write,
    /// The hold timed out.
    Release,
}

proptest! {
    /// Against a model of the rule: the front waits exactly while the oldest read of more
    /// than one request that is not written through still owes a reply; replies leave in
    /// order, and once every reply is in nothing waits.
    #[test]
    fn holding_follows_the_oldest_unanswered_read(ops in proptest::collection::vec(
        prop_oneof![
            (1usize..5).prop_map(Op::Read),
            (0usize..8).prop_map(Op::Fill),
            Just(Op::Write),
            Just(Op::Release),
        ],
        0..60,
    )) {
        let q = ReplyQueue::new();
        let mut owed: Vec<(u64, ReplyTarget)> = Vec::new();
        let mut filled: Vec<bool> = Vec::new(); // by sequence number
        let mut ends: Vec<u64> = Vec::new();
        let mut written = 0u64;
        for op in ops {
            match op {
                Op::Read(n) => {
                    for _ in 0..n {
                        owed.push((filled.len() as u64, q.reserve()));
                        filled.push(false);
                    }
                    if n > 1 {
                        q.end_batch();
                        ends.push(filled.len() as u64);
                    }
                }
                Op::Fill(i) if !owed.is_empty() => {
                    let (seq, target) = owed.remove(i % owed.len());
                    target.fill(Bytes::from(format!("+{seq}\r\n")));
                    filled[seq as usize] = true;
                }
                Op::Fill(_) => {}
                Op::Release => {
                    q.release_hold();
                    ends.clear();
                }
                Op::Write => {
                    if !q.holding() {
                        while let Some((reply, _)) = q.pop_ready() {
                            prop_assert_eq!(reply, Bytes::from(format!("+{written}\r\n")));
                            written += 1;
                        }
                    }
                }
            }
            let ready_through = written
                + filled[written as usize..].iter().take_while(|&&f| f).count() as u64;
            let oldest = ends.iter().copied().find(|&end| end > written);
            let model = oldest.is_some_and(|end| end > ready_through);
            prop_assert_eq!(q.holding(), model);
        }
        for (_, target) in owed.drain(..) {
            target.fill(Bytes::from_static(b"+late\r\n"));
        }
        prop_assert!(!q.holding(), "every reply is in");
    }
}

#[test]
fn late_replies_after_close_are_dropped() {
    let q = ReplyQueue::new();
    let a = q.reserve();
    q.close();
    a.fill(Bytes::from_static(b"+late\r\n"));
    assert_eq!(q.outstanding(), 0);
}

/// A queue whose replies may be written to one end of a socket pair, and the other end.
fn direct_queue() -> (
    Rc<ReplyQueue>,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    ours.set_nonblocking(true).expect("non-blocking");
    theirs.set_nonblocking(true).expect("non-blocking");
    let q = ReplyQueue::new();
    let stats = Arc::new(crate::stats::ProxyStats::new(
        1,
        "127.0.0.1:0".parse().expect("addr"),
    ));
    let logged = Rc::downgrade(&q);
    q.write_directly_to(
        std::os::fd::AsRawFd::as_raw_fd(&ours),
        stats,
        0,
        Box::new(move |_took, request| {
            // Logged while the reply is still owed: the client cannot have it yet.
            let owed = logged.upgrade().map_or(0, |q| q.outstanding());
            assert_eq!(owed, 1, "{request:?} logged after its reply");
            LOGGED.with(|l| l.borrow_mut().push(request.clone()));
        }),
    );
    (q, ours, theirs)
}

/// Everything the client's end has received so far.
fn received(theirs: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = theirs.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn a_parked_session_s_last_reply_is_written_where_it_arrives_without_waking_it() {
    let (q, _ours, mut theirs) = direct_queue();
    q.arm_direct(true);
    let a = q.reserve();
    a.fill(Bytes::from_static(b"+a\r\n"));
    assert!(!woken(&q), "nothing left for the session");
    assert_eq!(received(&mut theirs), b"+a\r\n");
    assert_eq!((q.outstanding(), q.unwritten(), q.front_seq()), (0, 0, 1));
}

#[test]
fn replies_wait_for_the_session_while_it_runs_or_while_one_is_owed() {
    let (q, _ours, mut theirs) = direct_queue();
    let a = q.reserve();
    a.fill(Bytes::from_static(b"+running\r\n"));
    assert!(woken(&q), "disarmed: the session writes");
    assert!(received(&mut theirs).is_empty());
    assert_eq!(take_replies(&q), [&b"+running\r\n"[..]]);
    q.written(10);

    q.arm_direct(true);
    let (b, c) = (q.reserve(), q.reserve());
    c.fill(Bytes::from_static(b"+c\r\n"));
    assert!(received(&mut theirs).is_empty(), "b is still owed");
    b.fill(Bytes::from_static(b"+b\r\n"));
    assert_eq!(
        received(&mut theirs),
        b"+b\r\n+c\r\n",
        "both in one write, in order"
    );
    assert_eq!((q.outstanding(), q.unwritten()), (0, 0));

    q.close();
    let d = q.reserve();
    d.fill(Bytes::from_static(b"+late\r\n"));
    assert!(
        received(&mut theirs).is_empty(),
        "closed: the socket may be gone"
    );
}

#[test]
fn a_reply_the_socket_cannot_take_whole_leaves_its_rest_to_the_session() {
    let (q, _ours, mut theirs) = direct_queue();
    q.arm_direct(true);
    let big = Bytes::from(vec![b'x'; 4 << 20]);
    let a = q.reserve();
    a.fill(big.clone());
    assert!(woken(&q), "the rest is the session's to write");
    let first = received(&mut theirs);
    assert!(
        !first.is_empty() && first.len() < big.len(),
        "a partial write"
    );
    let rest = take_replies(&q);
    assert_eq!(rest.len(), 1);
    assert_eq!(first.len() + rest[0].len(), big.len());
    assert_eq!(q.unwritten(), rest[0].len(), "only the rest is unwritten");
}

thread_local! {
    /// The requests the direct writer's slow logger was given, on this test's thread.
    static LOGGED: RefCell<Vec<Bytes>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn a_slow_request_is_logged_before_its_reply_is_written_where_it_arrives() {
    let (q, _ours, mut theirs) = direct_queue();
    q.set_slow_threshold(Some(std::time::Duration::ZERO));
    q.set_read_at(Instant::now());
    q.arm_direct(true);
    let a = q.reserve();
    let ping = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
    a.answer(Bytes::from_static(b"+PONG\r\n"), &ping, Instant::now());
    assert_eq!(LOGGED.with(|l| l.borrow().clone()), [ping]);
    assert!(!q.kept_slow(), "logged, nothing left for the session");
    assert!(!woken(&q));
    assert_eq!(received(&mut theirs), b"+PONG\r\n");
}
