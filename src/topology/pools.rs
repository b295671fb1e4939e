//! Pool mode: the slot table built from the config's `[pools]`, `[slots]` and `[placement]`
//! instead of discovered from a cluster. Pure.
//!
//! Shards are the pools in name order. With slot placement each pool serves the slot ranges
//! the slot map gives it (or an even share); with ketama placement, routing unit `i` is pool
//! `i`, and the table carries the continuum that maps keys to units.

use std::sync::Arc;

use crate::backend::Credentials;
use crate::config::{Config, Distribution};
use crate::placement::{Ketama, KetamaServer, Placement};

use super::table::{ShardInfo, SlotTable};

/// The table a pool-mode `config` describes (version 0; the topology numbers it). The config
/// should have passed [`Config::validate`]; what still does not fit is returned as text.
pub fn table_from_config(config: &Config) -> Result<SlotTable, String> {
    let ketama = config.placement.distribution == Distribution::Ketama;
    let shards: Vec<ShardInfo> = if ketama {
        config
            .pools
            .values()
            .enumerate()
            .map(|(i, pool)| {
                let unit = u16::try_from(i).map_err(|_| "too many pools".to_string())?;
                Ok(ShardInfo {
                    ranges: vec![(unit, unit)],
                    master: pool.master.clone(),
                    replicas: pool.replicas.clone(),
                })
            })
            .collect::<Result<_, String>>()?
    } else {
        config
            .pool_slot_ranges()
            .into_iter()
            .zip(config.pools.values())
            .map(|((_, ranges), pool)| ShardInfo {
                ranges,
                master: pool.master.clone(),
                replicas: pool.replicas.clone(),
            })
            .collect()
    };
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
        Placement::Ketama(
            Ketama::new(&servers, config.placement.hash, tag).map_err(|e| e.to_string())?,
        )
    } else {
        Placement::Slots
    };
    let auth = config
        .pools
        .values()
        .map(|pool| {
            pool.password.as_ref().map(|password| {
                Arc::new(Credentials::new(
                    pool.username.clone(),
                    password.expose().to_string(),
                ))
            })
        })
        .collect();
    let table = SlotTable::from_shards(&shards, 0).map_err(|e| e.to_string())?;
    Ok(table.with_pool_settings(placement, auth))
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let i = table.shard_of(Slot::new(slot).unwrap()).unwrap();
            table.shards()[i].master.to_string()
        };
        assert_eq!(master(0), "127.0.0.1:7002");
        assert_eq!(master(100), "127.0.0.1:7001");
        assert_eq!(table.covered_slots(), 16384);
        assert!(table.shards()[1].auth.is_some());
        assert_eq!(table.placement(), &Placement::Slots);
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
