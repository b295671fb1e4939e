//! Pool mode: the slot table built from the config's `[pools]`, `[slots]` and `[placement]`
//! instead of discovered from a cluster. Pure.
//!
//! Shards are the pools in name order. With slot placement each pool serves the slot ranges
//! the slot map gives it (or an even share); with ketama placement, routing unit `i` is pool
//! `i`, and the table carries the continuum that maps keys to units.

use std::collections::BTreeMap;

use crate::backend::Credentials;
use crate::config::{Config, Distribution};
use crate::placement::{Colocation, Ketama, KetamaServer, Placement};

use super::moving::Moving;
use super::table::{ShardInfo, ShardSettings, SlotTable};

/// The table a pool-mode `config` describes (version 0; the topology numbers it), for a
/// config whose pools all have a fixed master. See [`table_for`].
pub fn table_from_config(config: &Config) -> Result<SlotTable, String> {
    table_for(config, &BTreeMap::new(), &[])
}

/// The table a pool-mode `config` describes, with the masters Sentinel named so far
/// (`sentinel_masters`: pool name → `HOST:PORT`). A Sentinel pool whose master is not known
/// yet is left out: its slots are unserved (clients get a clear error) until it is resolved.
/// Slots of `[migration.moves]` are served by the pool their keys are heading to and
/// marked moving from the other; requests for slots in `held` wait (a phase change).
/// The config should have passed [`Config::validate`]; what still does not fit is returned
/// as text.
pub fn table_for(
    config: &Config,
    sentinel_masters: &BTreeMap<String, String>,
    held: &[(u16, u16)],
) -> Result<SlotTable, String> {
    let ketama = config.placement.distribution == Distribution::Ketama;
    let ranges = if ketama {
        config.pool_slot_ranges()
    } else {
        ranges_with_moves(config)
    };
    let mut shards: Vec<ShardInfo> = Vec::with_capacity(config.pools.len());
    let mut settings: Vec<ShardSettings> = Vec::with_capacity(config.pools.len());
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, ((name, pool), (_, slot_ranges))) in config.pools.iter().zip(ranges).enumerate() {
        let master = if pool.uses_sentinel() {
            match sentinel_masters.get(name) {
                Some(master) => master.as_str(),
                None => continue,
            }
        } else {
            pool.master.as_str()
        };
        if let Some(other) = owners.insert(master, name) {
            return Err(format!(
                "pools {other:?} and {name:?} both have {master} as their master"
            ));
        }
        let ranges = if ketama {
            let unit = u16::try_from(i).map_err(|_| "too many pools".to_string())?;
            vec![(unit, unit)]
        } else {
            slot_ranges
        };
        shards.push(ShardInfo {
            ranges,
            master: master.to_string(),
            replicas: pool.replicas.clone(),
            loading: Vec::new(),
        });
        settings.push(ShardSettings {
            auth: Credentials::configured(pool.username.as_deref(), pool.password.as_ref()),
            read_policy: pool.read_policy.unwrap_or(config.backend.read_policy),
        });
    }
    let placement = if ketama {
        let servers: Vec<KetamaServer> = config
            .pools
            .values()
            .map(|pool| KetamaServer {
                name: pool.ketama_server_name(),
                weight: pool.weight,
            })
            .collect();
        let tag = match config.placement.hash_tag.as_deref().map(str::as_bytes) {
            Some(&[open, close]) => Some([open, close]),
            _ => None,
        };
        Placement::ketama(
            Ketama::new(&servers, config.placement.hash, tag).map_err(|e| e.to_string())?,
        )
    } else {
        Placement::SLOTS
    };
    let colocation = Colocation::new(&config.placement.colocate).map_err(|e| e.to_string())?;
    let placement = placement.with_colocation(colocation);
    let table = SlotTable::from_shards(&shards, 0).map_err(|e| e.to_string())?;
    let shard_of_pool = |pool: &str| {
        let master = table_master(config, sentinel_masters, pool)?;
        shards.iter().position(|s| s.master == master)
    };
    let mut moving = Moving::default();
    for m in &config.migration.moves {
        let (Some((first, last)), (_, source)) = (m.range(), m.direction()) else {
            continue;
        };
        if let Some(source) = shard_of_pool(source) {
            moving.set_source(first, last, source);
        }
    }
    for &(first, last) in held {
        moving.hold(first, last);
    }
    Ok(table
        .with_pool_settings(placement, settings)
        .with_moving(moving))
}

/// The pools of a configuration moving keys onto a cluster (`migration.to_cluster`), as the
/// pool-mode table that placed the keys: where each key still may be. Sentinel pools are
/// refused by validation for such a move.
pub fn legacy_table(config: &Config) -> Result<SlotTable, String> {
    let mut pools = config.clone();
    pools.migration.to_cluster = None;
    pools.migration.moves.clear();
    table_for(&pools, &BTreeMap::new(), &[])
}

/// The master of pool `name`: its fixed one or the one Sentinel named, if known.
fn table_master<'a>(
    config: &'a Config,
    sentinel_masters: &'a BTreeMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    let pool = config.pools.get(name)?;
    if pool.uses_sentinel() {
        sentinel_masters.get(name).map(String::as_str)
    } else {
        Some(pool.master.as_str())
    }
}

/// Each pool's slot ranges (pools in name order) with the moves applied: a moving slot is
/// served by the pool its keys are heading to.
fn ranges_with_moves(config: &Config) -> Vec<(&str, Vec<(u16, u16)>)> {
    let committed = config.pool_slot_ranges();
    if config.migration.moves.is_empty() {
        return committed;
    }
    let names: Vec<&str> = committed.iter().map(|(name, _)| *name).collect();
    let mut owner: Vec<Option<usize>> = vec![None; crate::slot::SLOT_COUNT];
    for (i, (_, ranges)) in committed.iter().enumerate() {
        for &(first, last) in ranges {
            owner[first as usize..=last as usize].fill(Some(i));
        }
    }
    for m in &config.migration.moves {
        let (Some((first, last)), (serving, _)) = (m.range(), m.direction()) else {
            continue;
        };
        let serving = names.iter().position(|n| *n == serving);
        owner[first as usize..=last as usize].fill(serving);
    }
    let mut out: Vec<(&str, Vec<(u16, u16)>)> =
        names.iter().map(|name| (*name, Vec::new())).collect();
    let mut start = 0;
    while start < owner.len() {
        let mut end = start;
        while end + 1 < owner.len() && owner[end + 1] == owner[start] {
            end += 1;
        }
        if let Some(i) = owner[start] {
            out[i].1.push((start as u16, end as u16));
        }
        start = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::ReadPolicy;
    use crate::slot::Slot;

    #[test]
    fn slot_map_becomes_the_table() {
        let config = Config::parse(
            "[pools.a]\nmaster = \"127.0.0.1:7001\"\n[pools.b]\nmaster = \"127.0.0.1:7002\"\n\
             password = \"pw\"\n[slots]\n\"0-99\" = \"b\"\n\"100-16383\" = \"a\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        let table = table_from_config(&config).unwrap();
        let master = |slot| {
            let i = table.shard_of(Slot::new(slot).unwrap().into()).unwrap();
            table.shards()[i].master.to_string()
        };
        assert_eq!(master(0), "127.0.0.1:7002");
        assert_eq!(master(100), "127.0.0.1:7001");
        assert_eq!(table.covered_units(), 16384);
        assert!(table.shards()[1].auth.is_some());
        assert_eq!(table.placement(), &Placement::SLOTS);
        assert_eq!(table.shards()[0].read_policy, ReadPolicy::Master);
    }

    #[test]
    fn sentinel_pools_wait_for_their_master_and_policies_apply() {
        let config = Config::parse(
            "[backend]\nread_policy = \"prefer-replica\"\n\
             [pools.a]\nmaster = \"127.0.0.1:7001\"\nread_policy = \"replica\"\n\
             replicas = [\"127.0.0.1:7101\"]\n\
             [pools.b]\nsentinels = [\"127.0.0.1:26379\"]\nmaster_name = \"mb\"\n\
             replicas = [\"127.0.0.1:7102\"]\n",
        )
        .unwrap();
        config.validate().unwrap();
        let table = table_from_config(&config).unwrap();
        assert_eq!(table.shards().len(), 1);
        assert_eq!(table.shards()[0].read_policy, ReadPolicy::Replica);
        assert!(table.shard_of(Slot::new(16383).unwrap().into()).is_none());
        let masters = BTreeMap::from([("b".to_string(), "127.0.0.1:7002".to_string())]);
        let table = table_for(&config, &masters, &[]).unwrap();
        let b = &table.shards()[table.shard_of(Slot::new(16383).unwrap().into()).unwrap()];
        assert_eq!(&*b.master, "127.0.0.1:7002");
        assert_eq!(b.read_policy, ReadPolicy::PreferReplica);
        assert_eq!(b.replicas, [Arc::from("127.0.0.1:7102")]);
        // Sentinel naming another pool's master is refused, not merged.
        let clash = BTreeMap::from([("b".to_string(), "127.0.0.1:7001".to_string())]);
        assert!(table_for(&config, &clash, &[]).is_err());
    }

    #[test]
    fn ketama_units_are_pools() {
        let config = Config::parse(
            "[placement]\ndistribution = \"ketama\"\nhash = \"fnv1a_64\"\nhash_tag = \"{}\"\n\
             [pools.a]\nmaster = \"127.0.0.1:7001\"\n[pools.b]\nmaster = \"127.0.0.1:7002\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        let table = table_from_config(&config).unwrap();
        assert_eq!(table.serving_masters().len(), 2);
        for i in 0..100 {
            let unit = table.placement().unit_of(format!("k{i}").as_bytes());
            assert!(table.shard_of(unit).is_some());
        }
    }
}
