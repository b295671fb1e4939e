//! SCRIPT KILL and FUNCTION KILL: a runaway script keeps its node busy, answering BUSY to
//! everyone, and the node does not read the connection the script came on — the proxy's
//! scripts lane to it (`script_lane`). So the kill goes to every master on a dedicated
//! connection of its own, and the answers are merged as one Redis would answer: OK when a
//! script was killed, else the node's refusal (UNKILLABLE: the script wrote), else NOTBUSY.

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
