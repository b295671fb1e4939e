//! Stopping what runs on a node for a client. SCRIPT KILL and FUNCTION KILL: a runaway script keeps its node busy, answering BUSY to
//! everyone, and the node does not read the connection the script came on — the proxy's
//! scripts lane to it (`script_lane`). So the kill goes to every master on a dedicated
//! connection of its own, and the answers are merged as one Redis would answer: OK when a
//! script was killed, else the node's refusal (UNKILLABLE: the script wrote), else NOTBUSY.
//! CLIENT UNBLOCK: a proxy client's blocking command waits on a dedicated connection whose
//! node-side id the proxy registered (`ops::blocked`); the unblock goes to that node for it.

use bytes::Bytes;

use super::pinned::bounded;
use super::WorkerContext;

/// Send `request` (SCRIPT KILL or FUNCTION KILL, as the client sent it) to every master
/// serving slots, each on a dedicated connection, and merge the replies.
pub(super) async fn kill(worker: &WorkerContext, request: &Bytes) -> Bytes {
    let router = worker.router();
    let masters = router.table().serving_masters();
    let timeout = worker.settings().request_timeout;
    let mut replies = Vec::with_capacity(masters.len());
    for (master, _) in masters {
        let reply = match router.lease(&master, false).await {
            Ok(mut conn) => match bounded(Some(timeout), conn.call(request, 1), &master).await {
                Ok(mut got) => {
                    router.give_back(conn);
                    got.pop().map(|r| r.raw().clone())
                }
                Err(e) => Some(e.to_reply()),
            },
            Err(e) => Some(e.to_reply()),
        };
        replies.extend(reply);
    }
    merge(&replies)
}

/// CLIENT UNBLOCK client-id [TIMEOUT|ERROR], for the proxy's client ids: `:1` when the client
/// was blocked and the node unblocked it (its command then returns as Redis makes it:
/// a timeout's null, or `-UNBLOCKED`), `:0` when it was not blocked.
pub(super) async fn unblock(worker: &WorkerContext, args: &[&[u8]]) -> Bytes {
    let Some(id) = args
        .get(2)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.parse::<u64>().ok())
    else {
        return Bytes::from_static(b"-ERR value is not an integer or out of range\r\n");
    };
    let mode: &[u8] = match args.get(3) {
        None => b"TIMEOUT",
        Some(m) if m.eq_ignore_ascii_case(b"timeout") => b"TIMEOUT",
        Some(m) if m.eq_ignore_ascii_case(b"error") => b"ERROR",
        Some(_) => {
            return Bytes::from_static(b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n")
        }
    };
    if args.len() > 4 {
        return Bytes::from_static(b"-ERR syntax error\r\n");
    }
    let Some((node, node_id)) = worker.ops().blocked.get(id) else {
        return Bytes::from_static(b":0\r\n");
    };
    let request = crate::resp::Request::from_args([
        b"CLIENT" as &[u8],
        b"UNBLOCK",
        node_id.to_string().as_bytes(),
        mode,
    ]);
    let router = worker.router();
    let timeout = worker.settings().request_timeout;
    match router.lease(&node, false).await {
        Ok(mut conn) => match bounded(Some(timeout), conn.call(request.raw(), 1), &node).await {
            Ok(mut got) => {
                router.give_back(conn);
                got.pop()
                    .map_or_else(|| Bytes::from_static(b":0\r\n"), |r| r.raw().clone())
            }
            Err(e) => e.to_reply(),
        },
        Err(e) => e.to_reply(),
    }
}

/// One Redis's answer from the masters' replies: `+OK` if any killed a script; else the
/// first refusal other than NOTBUSY (UNKILLABLE, a failed node); else NOTBUSY.
fn merge(replies: &[Bytes]) -> Bytes {
    if let Some(ok) = replies.iter().find(|r| r.starts_with(b"+")) {
        return ok.clone();
    }
    replies
        .iter()
        .find(|r| !r.starts_with(b"-NOTBUSY"))
        .or(replies.first())
        .cloned()
        .unwrap_or_else(|| Bytes::from_static(b"-NOTBUSY No scripts in execution right now.\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTBUSY: &[u8] = b"-NOTBUSY No scripts in execution right now.\r\n";

    #[test]
    fn one_redis_answer_from_every_master() {
        let r = |b: &'static [u8]| Bytes::from_static(b);
        assert_eq!(
            merge(&[r(NOTBUSY), r(b"+OK\r\n"), r(NOTBUSY)]),
            r(b"+OK\r\n")
        );
        let unkillable = r(b"-UNKILLABLE Sorry the script already executed write commands\r\n");
        assert_eq!(merge(&[r(NOTBUSY), unkillable.clone()]), unkillable);
        assert_eq!(merge(&[r(NOTBUSY), r(NOTBUSY)]), r(NOTBUSY));
        assert_eq!(merge(&[]), r(NOTBUSY), "no master: nothing runs");
    }
}
