//! Bit sets for the two kinds of flags Redis 7 attaches to commands: command flags
//! (`write`, `readonly`, ...) and key-spec flags (`RW`, `access`, ...).
//!
//! Bits are numbered in the order Redis prints the flags in `COMMAND INFO`, so iterating the set
//! bits in ascending order reproduces Redis' output order without a separate table.

/// Declares a `u32` bit set with named constants, const set operations and a name iterator.
/// A macro because the two flag types differ only in their constants.
macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        $ty:ident {
            $( $(#[$fmeta:meta])* $konst:ident = $bit:expr => $name:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        pub struct $ty(u32);

        impl $ty {
            $( $(#[$fmeta])* pub const $konst: $ty = $ty(1 << $bit); )*

            /// The empty set.
            pub const EMPTY: $ty = $ty(0);

            /// Every flag with its Redis name, in Redis' output order.
            const NAMED: &'static [($ty, &'static str)] = &[ $( ($ty::$konst, $name), )* ];

            /// True when every flag of `other` is set in `self` (so always true for `EMPTY`).
            pub const fn contains(self, other: $ty) -> bool {
                self.0 & other.0 == other.0
            }

            /// True when `self` and `other` share at least one flag.
            pub const fn intersects(self, other: $ty) -> bool {
                self.0 & other.0 != 0
            }

            /// True when no flag is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// The flags set in either operand.
            pub const fn union(self, other: $ty) -> $ty {
                $ty(self.0 | other.0)
            }

            /// The flags set in any element; lets the generated table list flags by name.
            pub const fn union_of(all: &[$ty]) -> $ty {
                let mut bits = 0;
                let mut i = 0;
                while i < all.len() {
                    bits |= all[i].0;
                    i += 1;
                }
                $ty(bits)
            }

            /// The flags of `self` that are not in `other`.
            pub const fn difference(self, other: $ty) -> $ty {
                $ty(self.0 & !other.0)
            }

            /// The raw bits (stable only within one build; for metrics labels use `names`).
            pub const fn bits(self) -> u32 {
                self.0
            }

            /// Redis' names of the set flags, in the order `COMMAND INFO` prints them.
            pub fn names(self) -> impl Iterator<Item = &'static str> + Clone {
                Self::NAMED
                    .iter()
                    .filter(move |(flag, _)| self.contains(*flag))
                    .map(|(_, name)| *name)
            }
        }
    };
}

flag_set! {
    /// Command flags (bit set), named after Redis' `COMMAND INFO` flags.
    Flags {
        /// May modify the dataset.
        WRITE = 0 => "write",
        /// Only reads data.
        READONLY = 1 => "readonly",
        /// May grow memory use: refused when over `maxmemory`.
        DENYOOM = 2 => "denyoom",
        /// Implemented by a module (never set in this table).
        MODULE = 3 => "module",
        /// Administrative; a proxy should not forward it blindly.
        ADMIN = 4 => "admin",
        /// Pub/Sub related.
        PUBSUB = 5 => "pubsub",
        /// Not allowed inside Lua scripts or functions.
        NOSCRIPT = 6 => "noscript",
        /// May block the client.
        BLOCKING = 7 => "blocking",
        /// Allowed while the server loads its dataset.
        LOADING = 8 => "loading",
        /// Allowed on a replica with stale data.
        STALE = 9 => "stale",
        /// Not shown in `MONITOR`.
        SKIP_MONITOR = 10 => "skip_monitor",
        /// Not shown in `SLOWLOG`.
        SKIP_SLOWLOG = 11 => "skip_slowlog",
        /// Cluster: allowed on an importing slot after `ASKING`.
        ASKING = 12 => "asking",
        /// O(1) or O(log N): never delays the server.
        FAST = 13 => "fast",
        /// Allowed before `AUTH`.
        NO_AUTH = 14 => "no_auth",
        /// May be propagated to replicas although not a write. Redis hides it from
        /// `COMMAND INFO`, so `names()` yields it but the `COMMAND` replies leave it out.
        MAY_REPLICATE = 15 => "may_replicate",
        /// May legitimately be called with no keys at all (EVAL with numkeys 0).
        NO_MANDATORY_KEYS = 16 => "no_mandatory_keys",
        /// Refused during async loading (replica diskless load).
        NO_ASYNC_LOADING = 17 => "no_async_loading",
        /// Not allowed inside `MULTI`.
        NO_MULTI = 18 => "no_multi",
        /// Key positions depend on the arguments (legacy first/last/step are not enough).
        MOVABLE_KEYS = 19 => "movablekeys",
        /// Allowed while a script or function is busy.
        ALLOW_BUSY = 20 => "allow_busy",
    }
}

flag_set! {
    /// Key-spec flags (bit set): how a command uses the keys one key spec finds.
    KeySpecFlags {
        /// Read-only access.
        RO = 0 => "RO",
        /// Read-write access.
        RW = 1 => "RW",
        /// Overwrite: the old value is not read.
        OW = 2 => "OW",
        /// Removes the key.
        RM = 3 => "RM",
        /// Returns or exposes user data.
        ACCESS = 4 => "access",
        /// Updates data in place.
        UPDATE = 5 => "update",
        /// Only adds data.
        INSERT = 6 => "insert",
        /// Only deletes data.
        DELETE = 7 => "delete",
        /// Not a key but hashed like one (sharded Pub/Sub channels).
        NOT_KEY = 8 => "not_key",
        /// The spec may miss keys; Redis falls back to a command-specific rule.
        INCOMPLETE = 9 => "incomplete",
        /// The flags depend on the arguments (SET ... GET, BITFIELD).
        VARIABLE_FLAGS = 10 => "variable_flags",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let f = Flags::union_of(&[Flags::WRITE, Flags::FAST]);
        assert!(f.contains(Flags::WRITE) && f.contains(Flags::FAST));
        assert!(f.contains(Flags::EMPTY));
        assert!(!f.contains(Flags::READONLY));
        assert!(f.intersects(Flags::WRITE.union(Flags::READONLY)));
        assert_eq!(f.difference(Flags::FAST), Flags::WRITE);
        assert!(Flags::EMPTY.is_empty());
    }

    #[test]
    fn names_follow_redis_order() {
        let f = Flags::union_of(&[Flags::MOVABLE_KEYS, Flags::WRITE, Flags::DENYOOM]);
        assert_eq!(
            f.names().collect::<Vec<_>>(),
            ["write", "denyoom", "movablekeys"]
        );
        let k = KeySpecFlags::union_of(&[KeySpecFlags::UPDATE, KeySpecFlags::RW]);
        assert_eq!(k.names().collect::<Vec<_>>(), ["RW", "update"]);
    }
}
