//! The Redis 7.0 command table: arity, flags and key positions of every command. Pure: no I/O.
//!
//! What it owns: the static description of each command and subcommand ([`table`], generated
//! from a live redis-server by `tools/gen_commands.py`), finding the description for a request
//! ([`lookup`]), extracting the key positions of a request ([`CommandSpec::keys`], in `keys.rs`)
//! and answering the `COMMAND` family locally ([`introspect`]). Commands the table does not
//! know (module commands, newer ones) can be declared in `[commands.custom]` ([`custom`]).
//!
//! What it does not own: deciding where a request goes (the router uses `keys` and the flags)
//! or parsing RESP (requests arrive here as already split arguments).

pub mod acl;
pub mod config_get;
pub mod custom;
mod flags;
pub mod hll;
pub mod info_merge;
pub mod introspect;
pub mod keyless;
mod keys;
pub mod lcs;
mod lookup;
pub mod sort;
pub mod split;
pub mod stat_index;
pub mod table;
pub mod zset;

pub use flags::{Flags, KeySpecFlags};
pub use keys::KeyError;
pub(crate) use lookup::lookup_full_name;
pub use lookup::{by_id, id_of, lookup, lookup_counted, LookupCache};
pub use stat_index::{stat_index, stat_name};

/// Redis 7 key specification: where the search for keys begins and how keys are found from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Where the search starts.
    pub begin: BeginSearch,
    /// How keys are found once the search has begun.
    pub find: FindKeys,
    /// How the command uses the keys this spec finds.
    pub flags: KeySpecFlags,
    /// Redis' free-text remark on this spec (empty for most); shown by `COMMAND INFO`.
    pub notes: &'static str,
}

/// The first step of a key spec: the argument index where keys (or their count) begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeginSearch {
    /// Keys begin at this fixed argument index (0 is the command name).
    Index(u16),
    /// Keys begin right after `keyword` (matched case-insensitively). The search starts at
    /// `start_from` and walks forward; a negative `start_from` counts from the end and walks
    /// backward.
    Keyword {
        /// The keyword, as Redis spells it (upper case).
        keyword: &'static str,
        /// First index searched; negative counts from the end of the arguments.
        start_from: i16,
    },
    /// Redis cannot describe it; the command needs a specific rule (e.g. SORT's STORE).
    Unknown,
}

/// The second step of a key spec: which arguments after the begin index are keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys from the begin index up to `last_key` (relative to it; negative counts from the end
    /// of the arguments), every `key_step`. With `limit > 0` (and `last_key == -1`) only the
    /// first `1/limit` of the remaining arguments are keys (XREAD's `STREAMS k1 k2 id1 id2`).
    Range {
        /// Last key relative to the begin index, or from the end when negative.
        last_key: i16,
        /// Distance between keys (2 for MSET's key/value pairs).
        key_step: u16,
        /// Divisor of the remaining arguments when `last_key` is negative; 0 for none.
        limit: u16,
    },
    /// The number of keys is itself an argument (EVAL's numkeys).
    KeyNum {
        /// Index of the numkeys argument, relative to the begin index.
        key_num_idx: u16,
        /// Index of the first key, relative to the begin index.
        first_key: u16,
        /// Distance between keys.
        key_step: u16,
    },
    /// Redis cannot describe it; the command needs a specific rule.
    Unknown,
}

/// Everything the proxy knows about one command or subcommand.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name; subcommands are `container|sub` (`client|setname`), as in Redis.
    pub name: &'static str,
    /// Redis convention: `N` means exactly N arguments, `-N` at least N, counting the command
    /// name (and, for a subcommand, counting from the container command).
    pub arity: i16,
    /// Command flags.
    pub flags: Flags,
    /// Legacy first key index, for `COMMAND INFO` (use `keys` for routing).
    pub first_key: i16,
    /// Legacy last key index (negative counts from the end), for `COMMAND INFO`.
    pub last_key: i16,
    /// Legacy key step, for `COMMAND INFO`.
    pub step: i16,
    /// ACL categories as Redis prints them, with the `@` (`"@read"`).
    pub acl_categories: &'static [&'static str],
    /// Redis' hints for clients and proxies (`request_policy:all_shards`, ...).
    pub tips: &'static [&'static str],
    /// Key specifications, in Redis' order (key order of `keys` follows it).
    pub key_specs: &'static [KeySpec],
    /// Subcommands of a container command (CLIENT, CONFIG, ...), sorted by name.
    pub subcommands: &'static [CommandSpec],
    /// Documentation group (`string`, `server`, ...).
    pub group: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Redis version that introduced the command.
    pub since: &'static str,
    /// Time complexity in Redis' words (empty for a few commands, as in Redis).
    pub complexity: &'static str,
}

/// Every top-level command, sorted by name; subcommands hang off their container.
pub fn all() -> &'static [CommandSpec] {
    table::COMMANDS
}

impl CommandSpec {
    /// True when a request of `argc` arguments (command name included) satisfies the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let need = usize::from(self.arity.unsigned_abs());
        if self.arity >= 0 {
            argc == need
        } else {
            argc >= need
        }
    }

    /// May modify the dataset (`write` flag).
    pub fn is_write(&self) -> bool {
        self.flags.contains(Flags::WRITE)
    }

    /// Only reads data (`readonly` flag): may be served by a replica.
    pub fn is_readonly(&self) -> bool {
        self.flags.contains(Flags::READONLY)
    }

    /// Administrative command (`admin` flag).
    pub fn is_admin(&self) -> bool {
        self.flags.contains(Flags::ADMIN)
    }

    /// May block the connection (`blocking` flag).
    pub fn is_blocking(&self) -> bool {
        self.flags.contains(Flags::BLOCKING)
    }

    /// Pub/Sub command (`pubsub` flag).
    pub fn is_pubsub(&self) -> bool {
        self.flags.contains(Flags::PUBSUB)
    }

    /// True for a container command such as CLIENT or CONFIG.
    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }
}

#[cfg(test)]
mod tests;
