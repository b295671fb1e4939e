//! Key extraction: which arguments of a request are keys, following Redis 7's key specs.
//!
//! The general path interprets the key specs of the table exactly as Redis'
//! `getKeysUsingKeySpecs` does. Redis gives a few commands their own "getkeys" rule because
//! their specs are `unknown`, `incomplete` or have variable flags; those rules are written out
//! below, each saying which Redis rule it mirrors. The tests hold `COMMAND GETKEYS` answers
//! captured from redis-server 7.0.15 for every form the proxy cares about.
//!
//! Where Redis' GETKEYS only says "Invalid arguments" or finds nothing (bad numkeys), we return
//! the error the command itself would reply with, so the proxy can answer exactly like Redis
//! without asking a backend. (So `EVAL s 1x k` is an error here, as when running it, although
//! GETKEYS' lenient fallback parses "1x" as 1.) Nothing here panics on client input: every
//! index is checked.

use smallvec::SmallVec;

use super::{BeginSearch, CommandSpec, FindKeys, Flags, KeySpec, KeySpecFlags};

/// Why the keys of a request cannot be determined. `Display` gives the message Redis replies
/// with (to be sent after `-ERR `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The request does not satisfy the command's arity.
    #[error("wrong number of arguments for '{command}' command")]
    WrongArity {
        /// Full command name (`object|encoding`).
        command: &'static str,
    },
    /// numkeys is not a 64-bit integer (EVAL, ZUNIONSTORE and most others).
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// numkeys of FCALL / FCALL_RO is not an integer.
    #[error("Bad number of keys provided")]
    BadNumKeys,
    /// numkeys of EVAL / FCALL is negative.
    #[error("Number of keys can't be negative")]
    NegativeNumKeys,
    /// numkeys points past the last argument (EVAL, FCALL, SINTERCARD).
    #[error("Number of keys can't be greater than number of args")]
    TooManyKeys,
    /// numkeys of SINTERCARD / LMPOP / ZMPOP and their blocking forms is not a positive integer.
    #[error("numkeys should be greater than 0")]
    NumKeysNotPositive,
    /// numkeys of ZUNION / ZINTER / ZDIFF (and STORE forms, ZINTERCARD) is below 1.
    #[error("at least 1 input key is needed for '{command}' command")]
    NoInputKeys {
        /// Full command name.
        command: &'static str,
    },
    /// XREAD / XREADGROUP without a key for every ID after STREAMS (Redis says XREAD for both).
    #[error(
        "Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
    )]
    UnbalancedStreams,
    /// Anything else malformed: numkeys past the end for ZUNION/LMPOP-style commands, or a key
    /// range that runs off the arguments.
    #[error("syntax error")]
    Syntax,
}

impl KeyError {
    /// Stable short name, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyError::WrongArity { .. } => "wrong_arity",
            KeyError::NotAnInteger | KeyError::BadNumKeys => "numkeys_not_integer",
            KeyError::NegativeNumKeys | KeyError::NumKeysNotPositive => "numkeys_not_positive",
            KeyError::NoInputKeys { .. } => "no_input_keys",
            KeyError::TooManyKeys => "numkeys_too_large",
            KeyError::UnbalancedStreams => "unbalanced_streams",
            KeyError::Syntax => "syntax",
        }
    }

    /// The complete RESP error line for the client: `-ERR <message>\r\n`.
    pub fn to_reply(&self) -> String {
        format!("-ERR {self}\r\n")
    }
}

/// Commands whose keys Redis finds with a command-specific rule rather than the key specs.
enum Rule {
    /// Key specs alone give the right positions (and flags).
    Specs,
    /// SORT: spec for STORE is `unknown` (`sortGetKeys`).
    Sort,
    /// MIGRATE: the KEYS spec is `incomplete` (`migrateGetKeys`).
    Migrate,
    /// SET: positions from the spec, flags depend on GET (`setGetKeys`).
    Set,
    /// BITFIELD: positions from the spec, flags depend on the operations (`bitfieldGetKeys`).
    Bitfield,
}

/// How a command words its numkeys errors. Positions always come from the KeyNum spec; only
/// the reply text differs from command to command, so this is consulted on the error path only.
#[derive(Clone, Copy)]
enum NumKeysStyle {
    /// EVAL family: 0 is fine, negative and too large have their own texts.
    Eval,
    /// FCALL family: like EVAL but a non-integer is "Bad number of keys provided".
    Fcall,
    /// ZUNION/ZINTER/ZDIFF (+STORE) and ZINTERCARD: "at least 1 input key", then syntax error.
    ZSetOp,
    /// SINTERCARD: "numkeys should be greater than 0", then "can't be greater".
    SInterCard,
    /// LMPOP/ZMPOP (+blocking): "numkeys should be greater than 0", then syntax error.
    MPop,
}

impl NumKeysStyle {
    fn of(name: &str) -> NumKeysStyle {
        match name {
            "fcall" | "fcall_ro" => NumKeysStyle::Fcall,
            "zunionstore" | "zinterstore" | "zdiffstore" | "zunion" | "zinter" | "zdiff"
            | "zintercard" => NumKeysStyle::ZSetOp,
            "sintercard" => NumKeysStyle::SInterCard,
            "lmpop" | "blmpop" | "zmpop" | "bzmpop" => NumKeysStyle::MPop,
            // EVAL's wording is also the generic one.
            _ => NumKeysStyle::Eval,
        }
    }

    fn not_integer(self) -> KeyError {
        match self {
            NumKeysStyle::Eval | NumKeysStyle::ZSetOp => KeyError::NotAnInteger,
            NumKeysStyle::Fcall => KeyError::BadNumKeys,
            NumKeysStyle::SInterCard | NumKeysStyle::MPop => KeyError::NumKeysNotPositive,
        }
    }

    /// The error for `n < 1`, or `None` when zero keys is allowed (EVAL with numkeys 0).
    fn below_one(self, n: i64, command: &'static str) -> Option<KeyError> {
        match self {
            NumKeysStyle::Eval | NumKeysStyle::Fcall if n == 0 => None,
            NumKeysStyle::Eval | NumKeysStyle::Fcall => Some(KeyError::NegativeNumKeys),
            NumKeysStyle::ZSetOp => Some(KeyError::NoInputKeys { command }),
            NumKeysStyle::SInterCard | NumKeysStyle::MPop => Some(KeyError::NumKeysNotPositive),
        }
    }

    fn too_many(self) -> KeyError {
        match self {
            NumKeysStyle::Eval | NumKeysStyle::Fcall | NumKeysStyle::SInterCard => {
                KeyError::TooManyKeys
            }
            NumKeysStyle::ZSetOp | NumKeysStyle::MPop => KeyError::Syntax,
        }
    }
}

/// Parses an integer the way Redis' `string2ll` does: optional `-`, no `+`, no leading zeros,
/// no spaces, must fit in i64.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate negatively so i64::MIN parses without overflow.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

fn eq_ignore_case<A: AsRef<[u8]>>(arg: Option<&A>, word: &str) -> bool {
    arg.is_some_and(|a| a.as_ref().eq_ignore_ascii_case(word.as_bytes()))
}

impl CommandSpec {
    /// Indices (into args) of every key of this request, in Redis' order, written to `out`
    /// (cleared first; left empty on error). A request that fails the arity check is an error.
    ///
    /// Follows the key specs exactly as Redis' `getKeysUsingKeySpecs` does, with Redis' own
    /// specific rules for SORT and MIGRATE. Specs flagged `not_key` (sharded Pub/Sub channels)
    /// are skipped, like Redis does; see [`CommandSpec::routing_args`] to include them.
    pub fn keys<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        out: &mut SmallVec<[usize; 8]>,
    ) -> Result<(), KeyError> {
        out.clear();
        let res = self.visit_keys(args, false, false, |i, _| out.push(i));
        if res.is_err() {
            out.clear();
        }
        res
    }

    /// Like [`CommandSpec::keys`], but also returns the `not_key` positions (the channel of
    /// SPUBLISH / SSUBSCRIBE), which Redis Cluster routes by hash slot exactly like keys.
    pub fn routing_args<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        out: &mut SmallVec<[usize; 8]>,
    ) -> Result<(), KeyError> {
        out.clear();
        // GET, SET, INCR, HSET …: one key at a fixed index, found without the general walk
        // (whose outcome for them is the same).
        if let Some(i) = self.single_key_index() {
            if i < args.len() && self.arity_ok(args.len()) {
                out.push(i);
                return Ok(());
            }
        }
        let res = self.visit_keys(args, true, false, |i, _| out.push(i));
        if res.is_err() {
            out.clear();
        }
        res
    }

    /// The index of the only key of a command with one key spec that names exactly one
    /// argument at a fixed position (`Index(i)` then a range of one) and no command-specific
    /// rule (no movable keys): `Some(i)`.
    #[inline]
    pub(crate) fn single_key_index(&self) -> Option<usize> {
        match self.key_specs {
            [KeySpec {
                begin: BeginSearch::Index(i),
                find: FindKeys::Range { last_key: 0, .. },
                ..
            }] if !self.flags.contains(Flags::MOVABLE_KEYS) => Some(usize::from(*i)),
            _ => None,
        }
    }

    /// True when some key spec finds real keys (not only `not_key` channels): Redis' test
    /// before answering `COMMAND GETKEYS`.
    pub fn has_keys(&self) -> bool {
        self.key_specs
            .iter()
            .any(|s| !s.flags.contains(KeySpecFlags::NOT_KEY))
    }

    /// Calls `emit(index, flags)` for every key. `want_flags` asks for the exact flags of
    /// commands whose flags depend on the arguments (COMMAND GETKEYSANDFLAGS); without it
    /// those get their spec's flags and we skip scanning the arguments.
    pub(crate) fn visit_keys<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        include_not_keys: bool,
        want_flags: bool,
        mut emit: impl FnMut(usize, KeySpecFlags),
    ) -> Result<(), KeyError> {
        if !self.arity_ok(args.len()) {
            return Err(KeyError::WrongArity { command: self.name });
        }
        let variable = self
            .key_specs
            .iter()
            .any(|s| s.flags.contains(KeySpecFlags::VARIABLE_FLAGS));
        // Only movable-keys and variable-flags commands can need a specific rule, so the name
        // comparison stays off the path of GET, MSET and the like.
        let rule = if self.flags.contains(Flags::MOVABLE_KEYS) || variable {
            match self.name {
                "sort" => Rule::Sort,
                "migrate" => Rule::Migrate,
                "set" => Rule::Set,
                "bitfield" => Rule::Bitfield,
                _ => Rule::Specs,
            }
        } else {
            Rule::Specs
        };
        let spec_flags = |i: usize| {
            self.key_specs
                .get(i)
                .map_or(KeySpecFlags::EMPTY, |s| s.flags)
        };
        match rule {
            Rule::Sort => {
                sort_keys(args, spec_flags(0), spec_flags(2), &mut emit);
                Ok(())
            }
            Rule::Migrate => {
                migrate_keys(args, spec_flags(0), &mut emit);
                Ok(())
            }
            Rule::Set if want_flags => {
                emit(1, set_flags(args));
                Ok(())
            }
            Rule::Bitfield if want_flags => {
                emit(1, bitfield_flags(args));
                Ok(())
            }
            Rule::Specs | Rule::Set | Rule::Bitfield => {
                for spec in self.key_specs {
                    if spec.flags.contains(KeySpecFlags::NOT_KEY) && !include_not_keys {
                        continue;
                    }
                    self.visit_spec(spec, args, &mut emit)?;
                }
                Ok(())
            }
        }
    }

    /// One key spec, as one iteration of Redis' `getKeysUsingKeySpecs` loop. `unknown` parts
    /// find nothing (Redis' "partial" mode): every command whose unknown specs matter has a
    /// [`Rule`] above.
    fn visit_spec<A: AsRef<[u8]>>(
        &self,
        spec: &KeySpec,
        args: &[A],
        emit: &mut impl FnMut(usize, KeySpecFlags),
    ) -> Result<(), KeyError> {
        let argc = args.len();
        let first = match spec.begin {
            BeginSearch::Index(i) => usize::from(i),
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => match find_keyword(args, keyword, start_from) {
                Some(pos) => pos + 1,
                // An absent optional keyword (GEORADIUS without STORE) just means no keys.
                None => return Ok(()),
            },
            BeginSearch::Unknown => return Ok(()),
        };
        let (first, last, step) = match spec.find {
            FindKeys::Range {
                last_key,
                key_step,
                limit,
            } => {
                // Redis walks first..=last and skips what lies past the arguments (commands
                // of variable arity check their own): a range that starts past the end, or
                // ends before it starts (PFMERGE with no source key), names no key.
                if first >= argc {
                    return Ok(());
                }
                let last = if last_key >= 0 {
                    first + usize::from(last_key.unsigned_abs())
                } else if limit == 0 {
                    match argc.checked_sub(usize::from(last_key.unsigned_abs())) {
                        Some(last) if last >= first => last,
                        _ => return Ok(()),
                    }
                } else {
                    // Keys are the first 1/limit of what follows the keyword: Redis computes
                    // first + (argc - first) / limit + last_key, with last_key == -1.
                    let span = (argc - first) / usize::from(limit);
                    match (first + span).checked_sub(usize::from(last_key.unsigned_abs())) {
                        Some(last) if last >= first => last,
                        _ => return Err(KeyError::UnbalancedStreams),
                    }
                };
                if last < first {
                    return Ok(());
                }
                (first, last.min(argc - 1), key_step)
            }
            FindKeys::KeyNum {
                key_num_idx,
                first_key,
                key_step,
            } => {
                let style = || NumKeysStyle::of(self.name);
                let raw = args
                    .get(first + usize::from(key_num_idx))
                    .ok_or(KeyError::Syntax)?;
                let n = parse_i64(raw.as_ref()).ok_or_else(|| style().not_integer())?;
                if n < 1 {
                    return match style().below_one(n, self.name) {
                        Some(err) => Err(err),
                        None => Ok(()),
                    };
                }
                let first = first + usize::from(first_key);
                // n >= 1 here; anything that does not fit in usize is certainly too many.
                let n = usize::try_from(n).map_err(|_| style().too_many())?;
                let last = first
                    .checked_add(n - 1)
                    .filter(|&last| last < argc)
                    .ok_or_else(|| style().too_many())?;
                (first, last, key_step)
            }
            FindKeys::Unknown => return Ok(()),
        };
        // A zero step would loop forever; no Redis spec has one, but the table is data.
        for i in (first..=last).step_by(usize::from(step.max(1))) {
            emit(i, spec.flags);
        }
        Ok(())
    }
}

/// Index of `keyword` as Redis' keyword search finds it: forward from `start_from` to the
/// second-to-last argument (a keyword in last place has no key after it), or, when
/// `start_from` is negative, backward from `argc + start_from` down to index 2.
fn find_keyword<A: AsRef<[u8]>>(args: &[A], keyword: &str, start_from: i16) -> Option<usize> {
    let argc = args.len();
    let is_kw = |i: &usize| eq_ignore_case(args.get(*i), keyword);
    if start_from > 0 {
        let start = usize::from(start_from.unsigned_abs());
        (start..argc.saturating_sub(1)).find(is_kw)
    } else {
        // start_from == 0 would start past the end, where Redis stops at once.
        let start = argc
            .checked_sub(usize::from(start_from.unsigned_abs()))
            .filter(|&s| s < argc)?;
        (2..=start).rev().find(is_kw)
    }
}

/// SORT, mirroring Redis' `sortGetKeys`: the sorted key is argument 1; a `STORE dest` option
/// adds `dest` (the last STORE wins, as in SORT itself). LIMIT takes two arguments and BY/GET
/// one, so their values are never mistaken for STORE. BY/GET patterns are not keys.
fn sort_keys<A: AsRef<[u8]>>(
    args: &[A],
    key_flags: KeySpecFlags,
    store_flags: KeySpecFlags,
    emit: &mut impl FnMut(usize, KeySpecFlags),
) {
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let arg = args.get(i);
        if eq_ignore_case(arg, "limit") {
            i += 2;
        } else if eq_ignore_case(arg, "get") || eq_ignore_case(arg, "by") {
            i += 1;
        } else if eq_ignore_case(arg, "store") && i + 1 < args.len() {
            // Redis does not skip the destination here, so `STORE store x` stores into x.
            store = Some(i + 1);
        }
        i += 1;
    }
    emit(1, key_flags);
    if let Some(dest) = store {
        emit(dest, store_flags);
    }
}

/// MIGRATE, mirroring Redis' `migrateGetKeys`: `MIGRATE host port key db timeout` has its key
/// at 3; with `KEYS k1 k2 ...` (key argument empty) the keys are everything after KEYS. AUTH
/// and AUTH2 values are skipped so a password spelled "keys" is not taken for the keyword.
/// KEYS with a non-empty key argument is a syntax error Redis reports itself: no keys.
fn migrate_keys<A: AsRef<[u8]>>(
    args: &[A],
    flags: KeySpecFlags,
    emit: &mut impl FnMut(usize, KeySpecFlags),
) {
    let argc = args.len();
    let mut first = 3;
    let mut count = 1;
    let mut i = 6;
    while i < argc {
        let arg = args.get(i);
        if eq_ignore_case(arg, "keys") {
            if args.get(3).is_some_and(|k| !k.as_ref().is_empty()) {
                count = 0;
            } else {
                first = i + 1;
                count = argc - first;
            }
            break;
        }
        if eq_ignore_case(arg, "auth") {
            i += 1;
        } else if eq_ignore_case(arg, "auth2") {
            i += 2;
        }
        i += 1;
    }
    for pos in (first..argc).take(count) {
        emit(pos, flags);
    }
}

/// SET's key flags, as Redis' `setGetKeys`: with the GET option the old value is read.
fn set_flags<A: AsRef<[u8]>>(args: &[A]) -> KeySpecFlags {
    let has_get = args
        .iter()
        .skip(3)
        .any(|a| a.as_ref().eq_ignore_ascii_case(b"get"));
    if has_get {
        KeySpecFlags::union_of(&[KeySpecFlags::RW, KeySpecFlags::ACCESS, KeySpecFlags::UPDATE])
    } else {
        KeySpecFlags::OW.union(KeySpecFlags::UPDATE)
    }
}

/// BITFIELD's key flags, as Redis' `bitfieldGetKeys`: read-only when every operation is a
/// complete GET (or OVERFLOW); anything else, including a malformed request, counts as a write.
fn bitfield_flags<A: AsRef<[u8]>>(args: &[A]) -> KeySpecFlags {
    let mut readonly = true;
    let mut i = 2;
    while i < args.len() {
        let remaining = args.len() - i - 1;
        let arg = args.get(i);
        if eq_ignore_case(arg, "get") && remaining >= 2 {
            i += 3;
        } else if eq_ignore_case(arg, "overflow") && remaining >= 1 {
            i += 2;
        } else {
            // SET / INCRBY, or a syntax error: safer to assume a write.
            readonly = false;
            break;
        }
    }
    if readonly {
        KeySpecFlags::RO.union(KeySpecFlags::ACCESS)
    } else {
        KeySpecFlags::union_of(&[KeySpecFlags::RW, KeySpecFlags::ACCESS, KeySpecFlags::UPDATE])
    }
}

#[cfg(test)]
mod tests;
