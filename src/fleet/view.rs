//! The fleet as cluster-aware clients see it: the live instances, in a stable order (sorted
//! by announce address), each owning one contiguous share of the 16384 slots and named by a
//! node id derived from its address. Every instance that sees the same live set builds the
//! same view, so a client gets one answer whichever instance it asks. Pure.
//!
//! The slots are a way to spread clients' load, not ownership: every instance serves every
//! key, so a request for a slot "owned" by another instance is served, never redirected.

use crate::slot::SLOT_COUNT;

/// One instance in the view: where clients reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its announce address as given (`HOST:PORT`, `[V6]:PORT`): the sort key.
    pub addr: String,
    /// The host part, without brackets: an IP or a name.
    pub host: String,
    /// The client port.
    pub port: u16,
    /// Its node id: 40 hex digits, the SHA-1 of `addr` (the same on every instance and every
    /// version).
    pub id: String,
}

impl Member {
    /// The member at `addr` (`HOST:PORT`), or `None` when it is not one.
    pub fn parse(addr: &str) -> Option<Member> {
        let (host, port) = addr.rsplit_once(':')?;
        let port = port.parse::<u16>().ok()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return None;
        }
        Some(Member {
            addr: addr.to_string(),
            host: host.to_string(),
            port,
            id: node_id(addr),
        })
    }

    /// True when the host is a name rather than an IP address.
    pub fn is_hostname(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_err()
    }
}

/// The live instances of a fleet and which one is this instance. Immutable; a change is a
/// new value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetView {
    /// Sorted by address, without duplicates; never empty (this instance is always in it).
    members: Vec<Member>,
    /// This instance's index in `members`.
    own: usize,
}

impl FleetView {
    /// The view of the instance announced at `own` whose live peers announce `peers`
    /// (addresses that are not `HOST:PORT`, and repeats of `own`, are left out). `None`
    /// when `own` is not `HOST:PORT`.
    pub fn new<'a>(own: &str, peers: impl IntoIterator<Item = &'a str>) -> Option<FleetView> {
        let me = Member::parse(own)?;
        let mut members: Vec<Member> = peers.into_iter().filter_map(Member::parse).collect();
        members.push(me);
        members.sort_by(|a, b| a.addr.cmp(&b.addr));
        members.dedup_by(|a, b| a.addr == b.addr);
        let own = members.iter().position(|m| m.addr == own)?;
        Some(FleetView { members, own })
    }

    /// A proxy alone, at the socket address `local` (no `proxy.announce`).
    pub fn alone_at(local: std::net::SocketAddr) -> FleetView {
        let addr = local.to_string();
        let member = Member {
            host: local.ip().to_string(),
            port: local.port(),
            id: node_id(&addr),
            addr,
        };
        FleetView {
            members: vec![member],
            own: 0,
        }
    }

    /// Every live instance, in address order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// This instance.
    pub fn own(&self) -> &Member {
        // `own` indexes `members` by construction.
        &self.members[self.own]
    }

    /// True when member `index` is this instance.
    pub fn is_own(&self, index: usize) -> bool {
        index == self.own
    }

    /// The members with their slot ranges (first, last; inclusive), in slot order. A member
    /// left without a slot (more members than slots) is left out.
    pub fn shares(&self) -> impl Iterator<Item = (usize, &Member, u16, u16)> {
        let count = self.members.len();
        self.members
            .iter()
            .enumerate()
            .filter_map(move |(i, m)| share(i, count).map(|(first, last)| (i, m, first, last)))
    }

    /// How many members own slots.
    pub fn share_count(&self) -> usize {
        self.members.len().min(SLOT_COUNT)
    }

    /// The addresses, in order (for logs and tests).
    pub fn addresses(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.addr.as_str()).collect()
    }
}

/// The slots member `index` of `count` owns: the 16384 slots cut into `count` contiguous
/// ranges of sizes differing by at most one. `None` when it gets none (`index >= count`, or
/// more members than slots).
pub fn share(index: usize, count: usize) -> Option<(u16, u16)> {
    if index >= count {
        return None;
    }
    let first = index * SLOT_COUNT / count;
    let end = (index + 1) * SLOT_COUNT / count;
    if end == first {
        return None;
    }
    // Both below SLOT_COUNT (16384), so they fit a u16.
    Some((first as u16, (end - 1) as u16))
}

/// The node id of the instance announced at `addr`: the SHA-1 of the address, in hex.
pub fn node_id(addr: &str) -> String {
    sha1_smol::Sha1::from(addr).digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_slot_once_in_order() {
        for count in [1usize, 2, 3, 5, 7, 16, 1000, 16384, 16385] {
            let mut next = 0usize;
            for index in 0..count {
                if let Some((first, last)) = share(index, count) {
                    assert_eq!(usize::from(first), next, "count {count} index {index}");
                    assert!(first <= last);
                    next = usize::from(last) + 1;
                }
            }
            assert_eq!(next, SLOT_COUNT, "count {count}");
        }
        assert_eq!(share(0, 3), Some((0, 5460)));
        assert_eq!(share(1, 3), Some((5461, 10921)));
        assert_eq!(share(2, 3), Some((10922, 16383)));
        assert_eq!(share(3, 3), None);
        assert_eq!(share(0, 1), Some((0, 16383)));
    }

    #[test]
    fn every_instance_builds_the_same_view() {
        let a = FleetView::new("10.0.0.2:6380", ["10.0.0.3:6380", "10.0.0.1:6380"]).unwrap();
        let b = FleetView::new("10.0.0.3:6380", ["10.0.0.1:6380", "10.0.0.2:6380"]).unwrap();
        assert_eq!(a.members(), b.members());
        assert_eq!(
            a.addresses(),
            ["10.0.0.1:6380", "10.0.0.2:6380", "10.0.0.3:6380"]
        );
        assert_eq!(a.own().addr, "10.0.0.2:6380");
        assert!(a.is_own(1) && b.is_own(2));
        let shares: Vec<_> = a.shares().map(|(i, m, f, l)| (i, m.port, f, l)).collect();
        assert_eq!(
            shares,
            [
                (0, 6380, 0, 5460),
                (1, 6380, 5461, 10921),
                (2, 6380, 10922, 16383)
            ]
        );
    }

    #[test]
    fn repeats_and_bad_addresses_are_left_out() {
        let view = FleetView::new("h:1", ["h:1", "nope", "h:x", ":5", "g:2", "g:2"]).unwrap();
        assert_eq!(view.addresses(), ["g:2", "h:1"]);
        assert!(FleetView::new("nope", ["h:1"]).is_none());
        let alone = FleetView::alone_at("[::1]:6380".parse().unwrap());
        assert_eq!(
            alone.members(),
            FleetView::new("[::1]:6380", []).unwrap().members()
        );
    }

    #[test]
    fn members_parse_names_and_v6_and_get_stable_ids() {
        let v6 = Member::parse("[::1]:7000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7000));
        assert!(!v6.is_hostname());
        let named = Member::parse("slotgate-0.slotgate:6380").unwrap();
        assert!(named.is_hostname());
        assert_eq!(named.id.len(), 40);
        assert!(named.id.bytes().all(|b| b.is_ascii_hexdigit()));
        // SHA-1 of the address: the same on any instance, any build.
        assert_eq!(
            node_id("127.0.0.1:6380"),
            sha1_smol::Sha1::from("127.0.0.1:6380").digest().to_string()
        );
        assert_ne!(node_id("127.0.0.1:6380"), node_id("127.0.0.1:6381"));
    }
}
