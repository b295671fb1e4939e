//! Writing a phase change into the config file: its `[slots]` map and its
//! `[[migration.moves]]`, everything else (comments, order, other sections) kept as it was.
//! The file is replaced in one rename, so a crash leaves the old or the new one, never half.

use std::path::Path;

use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

use crate::config::{Config, SlotMove};

/// `text` (a config file) with the slot map and moves of `next`.
pub fn rewrite(text: &str, next: &Config) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("the config file does not parse as TOML: {e}"))?;
    if next.is_pool_mode() {
        let mut slots = Table::new();
        for (range, pool) in &next.slots {
            slots.insert(range, value(pool.as_str()));
        }
        doc.insert("slots", Item::Table(slots));
    } else {
        // Keys moved from the pools onto the cluster: a cluster-mode file from now on.
        for section in ["pools", "slots", "placement"] {
            doc.remove(section);
        }
    }
    if next.migration.to_cluster.is_some() || !next.is_pool_mode() {
        let cluster = doc
            .entry("cluster")
            .or_insert_with(|| Item::Table(Table::new()));
        let Some(cluster) = cluster.as_table_like_mut() else {
            return Err("[cluster] in the config file is not a table".into());
        };
        let seeds: toml_edit::Array = next.cluster.seeds.iter().map(String::as_str).collect();
        cluster.insert("seeds", value(seeds));
    } else if let Some(cluster) = doc.get_mut("cluster").and_then(Item::as_table_like_mut) {
        // An abort's end: pool mode names no cluster (its login, if written, stays).
        cluster.remove("seeds");
        if cluster.is_empty() {
            doc.remove("cluster");
        }
    }
    let migration = doc
        .entry("migration")
        .or_insert_with(|| Item::Table(Table::new()));
    let Some(migration) = migration.as_table_like_mut() else {
        return Err("[migration] in the config file is not a table".into());
    };
    if next.migration.version == 0 {
        migration.remove("version");
    } else {
        migration.insert("version", value(next.migration.version as i64));
    }
    match next.migration.to_cluster {
        Some(state) => {
            migration.insert("to_cluster", value(state.name()));
        }
        None => {
            migration.remove("to_cluster");
        }
    }
    if next.migration.moves.is_empty() {
        migration.remove("moves");
    } else {
        let mut moves = ArrayOfTables::new();
        for m in &next.migration.moves {
            moves.push(move_table(m));
        }
        migration.insert("moves", Item::ArrayOfTables(moves));
    }
    Ok(doc.to_string())
}

fn move_table(m: &SlotMove) -> Table {
    let mut t = Table::new();
    t.insert("slots", value(m.slots.as_str()));
    t.insert("from", value(m.from.as_str()));
    t.insert("to", value(m.to.as_str()));
    t.insert("state", value(m.state.name()));
    t
}

/// Rewrite the file at `path` for `next`: written beside it, then renamed over it.
pub fn write(path: &Path, next: &Config) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = rewrite(&text, next)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".slotgate-tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {:?}: {e}", tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// `[slots]` entries for an owner per slot (`None`: unassigned, left out), merged into ranges.
pub fn slot_map(owner: &[Option<&str>]) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut start = 0;
    while start < owner.len() {
        let mut end = start;
        while end + 1 < owner.len() && owner[end + 1] == owner[start] {
            end += 1;
        }
        if let Some(pool) = owner[start] {
            let key = if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            };
            out.insert(key, pool.to_string());
        }
        start = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MoveState;

    const FILE: &str = "# my pools\n[proxy]\nlisten = \"127.0.0.1:6380\" # the port\n\n\
                        [pools.a]\nmaster = \"127.0.0.1:7001\"\n[pools.b]\nmaster = \"127.0.0.1:7002\"\n\n\
                        [slots]\n\"0-16383\" = \"a\"\n\n[migration]\nkeys_per_second = 100\n";

    #[test]
    fn moves_and_slots_are_written_and_the_rest_kept() {
        let mut next = Config::parse(FILE).unwrap();
        next.migration.moves.push(SlotMove {
            slots: "0-99".into(),
            from: "a".into(),
            to: "b".into(),
            state: MoveState::Paused,
        });
        let text = rewrite(FILE, &next).unwrap();
        assert!(
            text.contains("# my pools") && text.contains("# the port"),
            "{text}"
        );
        let back = Config::parse(&text).unwrap();
        back.validate().unwrap();
        assert_eq!(back.migration.moves, next.migration.moves);
        assert_eq!(back.migration.keys_per_second, 100);

        let mut done = back.clone();
        done.migration.moves.clear();
        let mut owner = vec![Some("a"); crate::slot::SLOT_COUNT];
        owner[..100].fill(Some("b"));
        done.slots = slot_map(&owner);
        let text = rewrite(&text, &done).unwrap();
        let back = Config::parse(&text).unwrap();
        back.validate().unwrap();
        assert!(back.migration.moves.is_empty());
        assert_eq!(
            back.pool_slot_ranges(),
            vec![("a", vec![(100, 16383)]), ("b", vec![(0, 99)])]
        );
    }

    #[test]
    fn a_move_onto_a_cluster_is_written_and_its_end_leaves_a_cluster_mode_file() {
        let mut next = Config::parse(FILE).unwrap();
        next.cluster.seeds = vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()];
        next.migration.to_cluster = Some(MoveState::Moving);
        let text = rewrite(FILE, &next).unwrap();
        let back = Config::parse(&text).unwrap();
        back.validate().unwrap();
        assert_eq!(back.migration.to_cluster, Some(MoveState::Moving));
        assert_eq!(back.cluster.seeds, next.cluster.seeds);
        assert!(back.is_pool_mode());

        let mut done = back.clone();
        done.migration.to_cluster = None;
        done.pools.clear();
        done.slots.clear();
        let text = rewrite(&text, &done).unwrap();
        assert!(
            text.contains("# my pools") && text.contains("# the port"),
            "{text}"
        );
        let back = Config::parse(&text).unwrap();
        back.validate().unwrap();
        assert!(!back.is_pool_mode(), "{text}");
        assert_eq!(back.migration.to_cluster, None);
        assert_eq!(back.cluster.seeds, next.cluster.seeds);
        assert_eq!(back.migration.keys_per_second, 100);
    }

    #[test]
    fn an_aborted_move_onto_a_cluster_leaves_the_pool_mode_file_it_was() {
        let mut next = Config::parse(FILE).unwrap();
        next.cluster.seeds = vec!["127.0.0.1:7000".into()];
        next.migration.to_cluster = Some(MoveState::Aborting);
        let text = rewrite(FILE, &next).unwrap();
        let back = Config::parse(&text).unwrap();
        back.validate().unwrap();
        assert_eq!(back.migration.to_cluster, Some(MoveState::Aborting));

        let mut done = back.clone();
        done.migration.to_cluster = None;
        done.cluster.seeds.clear();
        let text = rewrite(&text, &done).unwrap();
        let back = Config::parse(&text).unwrap();
        back.validate().unwrap();
        assert!(back.is_pool_mode(), "{text}");
        assert!(
            back.cluster.seeds.is_empty() && !text.contains("[cluster]"),
            "{text}"
        );
        assert_eq!(back.migration.to_cluster, None);
        assert_eq!(
            back.pools,
            Config::parse(FILE).unwrap().pools,
            "pools unchanged"
        );
        assert!(text.contains("# my pools"), "{text}");
    }

    #[test]
    fn slot_maps_merge_runs() {
        let mut owner = vec![Some("a"); 5];
        owner[2] = Some("b");
        owner[4] = None;
        let map = slot_map(&owner);
        assert_eq!(map.get("0-1").map(String::as_str), Some("a"));
        assert_eq!(map.get("2").map(String::as_str), Some("b"));
        assert_eq!(map.get("3").map(String::as_str), Some("a"));
        assert_eq!(map.len(), 3);
    }
}
