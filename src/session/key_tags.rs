//! Co-location rules and emulated databases in cluster mode, the session's side (the rules
//! themselves are [`crate::placement::colocate`] and [`crate::placement::namespace`]): each
//! request's keys get their group's tag and their database's prefix on the way in, and the
//! reply queue is told which replies carry key names, to give them back under the client's
//! names ([`super::queue::Expect`]).

use bytes::Bytes;
use smallvec::SmallVec;

use crate::command::CommandSpec;
use crate::placement::{Colocation, KeyReply, KeySpace};
use crate::resp::Request;

use super::queue::Expect;

/// The request to send instead of the one with `args` in `space`, when one of its keys
/// belongs to a group or to an emulated database, or its `KEYS` / `SCAN … MATCH` pattern must
/// be widened or prefixed; `None`: send it as it is.
pub(super) fn tagged(
    tags: &Colocation,
    space: &KeySpace,
    spec: &CommandSpec,
    args: &[&[u8]],
) -> Option<Request> {
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    // A request whose keys cannot be found is refused by routing, with Redis' error.
    spec.keys(args, &mut keys).ok()?;
    let pattern = pattern_index(spec, args);
    if let (KeySpace::Db(prefix), "scan", None) = (space, spec.name, pattern) {
        // SCAN of an emulated database without MATCH: its keys are those under its prefix.
        let all = [&prefix[..], b"*"].concat();
        let mut sent: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        sent.extend([Bytes::from_static(b"MATCH"), Bytes::from(all)]);
        return Some(Request::from_args(sent));
    }
    let sent = tags.tag_request(space, args, &keys, pattern)?;
    Some(Request::from_args(sent))
}

/// What the reply to `args` (sent as `spec`) holds in key names, if anything, read in
/// `space`; `client_args` are the request as the client sent it (its pattern is the filter).
pub(super) fn expect(
    spec: &CommandSpec,
    client_args: &[&[u8]],
    space: &KeySpace,
) -> Option<Expect> {
    let shape = KeyReply::of(spec.name)?;
    let pattern = pattern_index(spec, client_args)
        .and_then(|i| client_args.get(i))
        .map(|p| Bytes::copy_from_slice(p));
    Some(Expect::Reply(shape, pattern, space.clone()))
}

/// The index of the key pattern: `KEYS pattern`, `SCAN cursor … MATCH pattern …`.
fn pattern_index(spec: &CommandSpec, args: &[&[u8]]) -> Option<usize> {
    match spec.name {
        "keys" => Some(1),
        "scan" => (2..args.len())
            .step_by(2)
            .find(|&i| {
                args.get(i)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"match"))
            })
            .map(|i| i + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ColocateRule;

    fn tags() -> Colocation {
        Colocation::new(&[ColocateRule {
            name: "rq".into(),
            keys: vec!["rq:*".into()],
        }])
        .unwrap()
    }

    fn args(words: &[&'static str]) -> Vec<&'static [u8]> {
        words.iter().map(|w| w.as_bytes()).collect()
    }

    fn sent(words: &[&'static str]) -> Option<Vec<Vec<u8>>> {
        let a = args(words);
        let spec = crate::command::lookup(&a).unwrap();
        tagged(&tags(), &KeySpace::Whole, spec, &a)
            .map(|r| r.args().iter().map(|x| x.to_vec()).collect())
    }

    fn strings(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn keys_of_every_command_shape_get_the_tag() {
        assert_eq!(
            sent(&["MSET", "rq:a", "1", "b", "rq:c"]),
            Some(strings(&["MSET", "{rq}rq:a", "1", "b", "rq:c"]))
        );
        assert_eq!(
            sent(&["EVAL", "return 1", "2", "rq:a", "x", "rq:b"]),
            Some(strings(&["EVAL", "return 1", "2", "{rq}rq:a", "x", "rq:b"]))
        );
        assert_eq!(
            sent(&["BLPOP", "rq:q1", "rq:q2", "0"]),
            Some(strings(&["BLPOP", "{rq}rq:q1", "{rq}rq:q2", "0"]))
        );
        assert_eq!(
            sent(&["XREAD", "COUNT", "1", "STREAMS", "rq:s", "0"]),
            Some(strings(&[
                "XREAD", "COUNT", "1", "STREAMS", "{rq}rq:s", "0"
            ]))
        );
        assert_eq!(
            sent(&["SCAN", "0", "COUNT", "10", "MATCH", "rq:*"]),
            Some(strings(&["SCAN", "0", "COUNT", "10", "MATCH", "*rq:*"]))
        );
        assert_eq!(sent(&["GET", "other"]), None);
        assert_eq!(sent(&["PING"]), None);
    }

    #[test]
    fn replies_with_key_names_are_expected() {
        let a = args(&["KEYS", "rq:*"]);
        let spec = crate::command::lookup(&a).unwrap();
        assert_eq!(
            expect(spec, &a, &KeySpace::Whole),
            Some(Expect::Reply(
                KeyReply::Keys,
                Some(Bytes::from("rq:*")),
                KeySpace::Whole
            ))
        );
        let a = args(&["GET", "rq:x"]);
        assert_eq!(
            expect(crate::command::lookup(&a).unwrap(), &a, &KeySpace::Whole),
            None
        );
    }
}
