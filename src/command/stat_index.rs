//! A small dense number per top-level command, for per-command counters: a worker counts a
//! request with an array index and one relaxed add, never a map lookup or a label search.
//!
//! Index `i < COMMAND_COUNT` is `table::COMMANDS[i]`; a subcommand (`client|list`) counts
//! under its container (`client`), so the label set stays bounded. [`OTHER`] takes unknown
//! commands and everything refused before a command was recognised.

use super::{table, CommandSpec};

/// The index of "not a known command" (`other` in metrics).
pub const OTHER: usize = table::COMMAND_COUNT;

/// Number of indices: every top-level command plus [`OTHER`].
pub const COUNT: usize = table::COMMAND_COUNT + 1;

/// The counter index of `spec` (a lookup result), or [`OTHER`] for `None`.
///
/// A top-level spec is found by its address inside the static table (a subtraction and a
/// division); a subcommand by a binary search for its container's name. The request path
/// does not pay that: [`lookup_counted`](super::lookup_counted) knows the container.
#[inline]
pub fn stat_index(spec: Option<&CommandSpec>) -> usize {
    let Some(spec) = spec else {
        return OTHER;
    };
    let base = table::COMMANDS.as_ptr() as usize;
    let offset = (spec as *const CommandSpec as usize).wrapping_sub(base);
    let index = offset / std::mem::size_of::<CommandSpec>();
    if offset % std::mem::size_of::<CommandSpec>() == 0 && index < table::COMMAND_COUNT {
        return index;
    }
    let container = spec.name.split('|').next().unwrap_or_default();
    table::COMMANDS
        .binary_search_by(|c| c.name.cmp(container))
        .unwrap_or(OTHER)
}

/// The lower-case name counted under index `i` (`other` for [`OTHER`] and out of range).
pub fn stat_name(i: usize) -> &'static str {
    table::COMMANDS.get(i).map_or("other", |c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    #[test]
    fn commands_and_subcommands_map_to_their_top_level_entry() {
        for (i, cmd) in table::COMMANDS.iter().enumerate() {
            assert_eq!(stat_index(Some(cmd)), i, "{}", cmd.name);
            assert_eq!(stat_name(i), cmd.name);
            for sub in cmd.subcommands {
                assert_eq!(stat_index(Some(sub)), i, "{}", sub.name);
            }
        }
        let get = lookup(&["GeT", "k"]);
        assert_eq!(stat_name(stat_index(get)), "get");
        let list = lookup(&["client", "LIST"]);
        assert_eq!(stat_name(stat_index(list)), "client");
        for words in [
            &["client", "LIST"][..],
            &["GET", "k"],
            &["config", "nosuch"],
        ] {
            let (spec, index) = crate::command::lookup_counted(words).unwrap();
            assert_eq!(index, stat_index(Some(spec)), "{words:?}");
        }
        assert_eq!(stat_index(lookup(&["nosuchcommand"])), OTHER);
        assert_eq!(stat_name(OTHER), "other");
        assert_eq!(COUNT, OTHER + 1);
    }
}
