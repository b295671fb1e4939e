//! Which node of a shard serves a read: the master or one of its healthy replicas, by the
//! shard's read policy. Pure: `pool` keeps the connections and the healthy list, this decides.
//!
//! The rule, as docs/ARCHITECTURE.md tables it (the tests below hold it to that table):
//!
//! | policy | first try | retried read | no healthy replica |
//! |---|---|---|---|
//! | `master` | master | master | master |
//! | `prefer-replica` | healthy replica picked by client id | master | master |
//! | `replica` | healthy replica picked by client id | the next healthy replica | refused |
//! | `round-robin` | master and healthy replicas in turn | master | master |

use crate::config::ReadPolicy;

/// Where one read goes within its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadTarget {
    /// The shard's master.
    Master,
    /// The healthy replica at this position of the shard's healthy replicas.
    Replica(usize),
    /// `read_policy = "replica"` and no replica is healthy: the read is refused.
    NoHealthyReplica,
}

/// The target of a read of client `client_id` by `policy`, when `healthy` replicas of the
/// shard are healthy, on try `attempt` (0: the first; later tries follow a replica that
/// failed). `rotation` is the worker's round-robin counter, advanced on each round-robin turn.
pub fn choose(
    policy: ReadPolicy,
    healthy: usize,
    attempt: u8,
    client_id: u64,
    rotation: &mut u64,
) -> ReadTarget {
    let replica = |turn: u64| ReadTarget::Replica((turn % healthy.max(1) as u64) as usize);
    match policy {
        ReadPolicy::Master => ReadTarget::Master,
        ReadPolicy::PreferReplica if attempt == 0 && healthy > 0 => replica(client_id),
        ReadPolicy::PreferReplica => ReadTarget::Master,
        ReadPolicy::Replica if healthy == 0 => ReadTarget::NoHealthyReplica,
        ReadPolicy::Replica => replica(client_id.wrapping_add(u64::from(attempt))),
        ReadPolicy::RoundRobin if attempt > 0 || healthy == 0 => ReadTarget::Master,
        ReadPolicy::RoundRobin => {
            *rotation = rotation.wrapping_add(1);
            match *rotation % (healthy as u64 + 1) {
                0 => ReadTarget::Master,
                turn => replica(turn - 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReadTarget::{Master, NoHealthyReplica, Replica};

    /// `choose` for client 7 with `healthy` replicas on try `attempt`, rotation from 0.
    fn pick(policy: ReadPolicy, healthy: usize, attempt: u8) -> ReadTarget {
        choose(policy, healthy, attempt, 7, &mut 0)
    }

    /// One row of the table in docs/ARCHITECTURE.md per policy: first try, retried read and
    /// no healthy replica. With 3 healthy replicas client 7 is given replica 7 % 3 = 1.
    #[test]
    fn the_documented_table() {
        let rows = [
            (ReadPolicy::Master, Master, Master, Master),
            (ReadPolicy::PreferReplica, Replica(1), Master, Master),
            (
                ReadPolicy::Replica,
                Replica(1),
                Replica(2),
                NoHealthyReplica,
            ),
            // Round-robin's first turn (rotation 0 → 1) is the first replica.
            (ReadPolicy::RoundRobin, Replica(0), Master, Master),
        ];
        for (policy, first, retried, none_healthy) in rows {
            assert_eq!(pick(policy, 3, 0), first, "{policy:?} first try");
            assert_eq!(pick(policy, 3, 1), retried, "{policy:?} retried");
            for attempt in [0, 1] {
                assert_eq!(
                    pick(policy, 0, attempt),
                    none_healthy,
                    "{policy:?} none healthy"
                );
            }
        }
    }

    #[test]
    fn a_client_keeps_its_replica_and_clients_spread_over_them() {
        let mut rotation = 0;
        let replica_of = |client| choose(ReadPolicy::PreferReplica, 3, 0, client, &mut 0);
        assert_eq!(replica_of(4), replica_of(4));
        let seen: std::collections::HashSet<_> = (0..3).map(replica_of).collect();
        assert_eq!(seen.len(), 3);
        assert_eq!(rotation, 0);
        // `replica` walks on to the next healthy replica on each retry.
        let tries: Vec<_> = (0..4)
            .map(|a| choose(ReadPolicy::Replica, 3, a, 0, &mut rotation))
            .collect();
        assert_eq!(tries, [Replica(0), Replica(1), Replica(2), Replica(0)]);
        assert_eq!(rotation, 0, "only round-robin turns the rotation");
    }

    #[test]
    fn round_robin_takes_the_master_and_each_replica_in_turn() {
        let mut rotation = 0;
        let turns: Vec<_> = (0..6)
            .map(|_| choose(ReadPolicy::RoundRobin, 2, 0, 9, &mut rotation))
            .collect();
        assert_eq!(
            turns,
            [
                Replica(0),
                Replica(1),
                Master,
                Replica(0),
                Replica(1),
                Master
            ]
        );
        assert_eq!(rotation, 6);
        choose(ReadPolicy::RoundRobin, 2, 1, 9, &mut rotation);
        assert_eq!(
            rotation, 6,
            "a retried read goes to the master and takes no turn"
        );
    }
}
