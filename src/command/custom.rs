//! Commands the built-in table does not know, declared in `[commands.custom]`: module commands
//! (`JSON.SET`, `FT.SEARCH`, `BF.ADD` …) and commands newer than Redis 7.0. Pure: no I/O.
//!
//! A declaration gives what `COMMAND INFO` says of a command: its arity, its flags and where
//! its keys are — a legacy range (`first_key`, `last_key`, `step`) or a key count
//! (`numkeys_index`, the keys following it, as EVAL's). Each becomes a [`CommandSpec`] with
//! one key spec, so key extraction, routing (one slot → its master, or a replica for a
//! `readonly` command when the read policy allows; several slots → CROSSSLOT), arity errors,
//! blocking commands and `COMMAND INFO` treat it like a built-in command.
//!
//! A declaration must name a key: a command without one has nothing to route by, so it
//! would be refused anyway (a numkeys command called with 0 keys is refused at run time).
//! Names may not shadow a built-in command. The specs are built once, when the proxy starts,
//! and live as long as the process ([`CustomCommands::build`] leaks them, a few hundred bytes
//! per command), so a lookup returns `&'static CommandSpec` like the built-in table does.
//! The session's [`super::LookupCache`] asks [`CustomCommands::lookup`] only after the
//! built-in lookup missed.

use super::{lookup_full_name, BeginSearch, CommandSpec, FindKeys, Flags, KeySpec, KeySpecFlags};

/// Longest command name accepted: the built-in lookup's limit.
const MAX_NAME: usize = 48;

/// The flags a declaration may list, with what each does for the proxy.
const ALLOWED_FLAGS: &[(&str, Flags)] = &[
    ("write", Flags::WRITE),
    ("readonly", Flags::READONLY),
    ("denyoom", Flags::DENYOOM),
    ("fast", Flags::FAST),
    ("blocking", Flags::BLOCKING),
    ("noscript", Flags::NOSCRIPT),
    ("no_multi", Flags::NO_MULTI),
    ("loading", Flags::LOADING),
    ("stale", Flags::STALE),
    ("allow_busy", Flags::ALLOW_BUSY),
    ("skip_monitor", Flags::SKIP_MONITOR),
    ("skip_slowlog", Flags::SKIP_SLOWLOG),
];

/// One `[commands.custom."NAME"]` table, as written (checked by [`check`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declaration {
    /// Redis' arity: `N` exactly N arguments, `-N` at least N, the command name included.
    pub arity: Option<i64>,
    /// Command flags by Redis' names (`write`, `readonly`, `blocking` …).
    pub flags: Vec<String>,
    /// Index of the first key (1 = the argument after the name).
    pub first_key: Option<i64>,
    /// Index of the last key; negative counts from the end (-1 = the last argument).
    /// Defaults to `first_key`.
    pub last_key: Option<i64>,
    /// Distance between keys (2 for key/value pairs). Defaults to 1.
    pub step: Option<i64>,
    /// Index of the argument holding the number of keys, which follow it (EVAL-like).
    pub numkeys_index: Option<i64>,
}

/// A problem with one declaration: the command as written, the field (`None`: the whole
/// declaration) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclarationError {
    /// The command name as written in the configuration.
    pub command: String,
    /// The offending field, when one is to blame.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

/// Where a checked declaration's keys are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keys {
    /// From `first` to `last` (negative: from the end) every `step`.
    Range { first: u16, last: i16, step: u16 },
    /// The count at `index`, the keys after it every `step`.
    NumKeys { index: u16, step: u16 },
}

/// A declaration that passed [`check`], ready to become a [`CommandSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Checked {
    name: String,
    arity: i16,
    flags: Flags,
    keys: Keys,
}

/// Every problem of `declarations` (name → declaration, as configured); empty when all are
/// usable.
pub fn check<'a>(
    declarations: impl IntoIterator<Item = (&'a str, &'a Declaration)>,
) -> Vec<DeclarationError> {
    checked(declarations).err().unwrap_or_default()
}

/// The checked declarations, sorted by name (case-insensitive), or every problem found.
fn checked<'a>(
    declarations: impl IntoIterator<Item = (&'a str, &'a Declaration)>,
) -> Result<Vec<Checked>, Vec<DeclarationError>> {
    let mut errors = Vec::new();
    let mut done: Vec<Checked> = Vec::new();
    for (name, declaration) in declarations {
        let mut fail = |field, message: String| {
            errors.push(DeclarationError {
                command: name.to_string(),
                field,
                message,
            })
        };
        match check_one(name, declaration) {
            Ok(c) if done.iter().any(|d| d.name.eq_ignore_ascii_case(&c.name)) => fail(
                None,
                format!("{name:?} is declared twice (names are case-insensitive)"),
            ),
            Ok(c) => done.push(c),
            Err(problems) => problems.into_iter().for_each(|(f, m)| fail(f, m)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    done.sort_by_key(|c| c.name.to_ascii_lowercase());
    Ok(done)
}

/// One declaration's problems, each with its field.
type Problems = Vec<(Option<&'static str>, String)>;

fn check_one(name: &str, d: &Declaration) -> Result<Checked, Problems> {
    let mut problems: Problems = Vec::new();
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'|')
    {
        problems.push((
            None,
            format!(
                "{name:?} is not a command name: 1 to {MAX_NAME} printable ASCII characters, \
                 no spaces, no '|'"
            ),
        ));
    } else if lookup_full_name(name.as_bytes()).is_some() {
        problems.push((
            None,
            format!(
                "{name:?} is a built-in command (Redis 7.0 table); only commands the table does \
                 not know can be declared"
            ),
        ));
    }
    let arity = match d.arity {
        None => {
            problems.push((
                Some("arity"),
                "is required (as COMMAND INFO gives it: N exactly, -N at least N arguments, the \
                 name included)"
                    .into(),
            ));
            None
        }
        Some(a) if a == 0 || a.unsigned_abs() > i16::MAX as u64 => {
            problems.push((
                Some("arity"),
                format!("{a} is not an arity: N (exactly N arguments) or -N (at least N)"),
            ));
            None
        }
        Some(a) => i16::try_from(a).ok(),
    };
    // Fewest arguments a call has (name included); every key index must be below it.
    let min_args = arity.map(i16::unsigned_abs);
    let mut flags = Flags::EMPTY;
    for flag in &d.flags {
        match ALLOWED_FLAGS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(flag))
        {
            Some((_, f)) => flags = flags.union(*f),
            None => problems.push((
                Some("flags"),
                format!(
                    "unknown flag {flag:?} (allowed: {})",
                    ALLOWED_FLAGS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
    if flags.contains(Flags::WRITE.union(Flags::READONLY)) {
        problems.push((
            Some("flags"),
            "\"write\" and \"readonly\" exclude each other".into(),
        ));
    }
    let step = match d.step {
        None => Some(1),
        Some(s) if (1..=i64::from(u16::MAX)).contains(&s) => u16::try_from(s).ok(),
        Some(s) => {
            problems.push((Some("step"), format!("{s} must be at least 1")));
            None
        }
    };
    // A key index the fewest arguments reach: 1 ..= min_args - 1.
    let index = |field: &'static str, v: i64, problems: &mut Problems| -> Option<u16> {
        if v < 1 {
            problems.push((
                Some(field),
                format!("{v} must be at least 1 (0 is the command name)"),
            ));
            return None;
        }
        match min_args {
            Some(min) if v >= i64::from(min) => {
                problems.push((
                    Some(field),
                    format!(
                        "{v} is past the fewest arguments the arity allows ({min}, the name \
                         included): such a call would have no key"
                    ),
                ));
                None
            }
            _ => u16::try_from(v).ok(),
        }
    };
    let keys = match (d.first_key, d.numkeys_index) {
        (Some(_), Some(_)) => {
            problems.push((
                Some("numkeys_index"),
                "excludes first_key: keys are either a fixed range or counted".into(),
            ));
            None
        }
        (None, None) => {
            problems.push((
                None,
                "declares no key: set first_key (with last_key and step) or numkeys_index; a \
                 key-less command has nothing to route by and is not served"
                    .into(),
            ));
            None
        }
        (None, Some(n)) => {
            if d.last_key.is_some() {
                problems.push((
                    Some("last_key"),
                    "goes with first_key, not numkeys_index (the count says where the keys \
                     end)"
                        .into(),
                ));
            }
            let index = index("numkeys_index", n, &mut problems);
            match (index, step) {
                (Some(index), Some(step)) if d.last_key.is_none() => {
                    Some(Keys::NumKeys { index, step })
                }
                _ => None,
            }
        }
        (Some(f), None) => {
            let first = index("first_key", f, &mut problems);
            let last = match (first, d.last_key) {
                (Some(first), None) => Some(i16::try_from(first).unwrap_or(i16::MAX)),
                (Some(first), Some(l)) if l > 0 => {
                    index("last_key", l, &mut problems).and_then(|l| {
                        if l < first {
                            problems.push((
                                Some("last_key"),
                                format!("{l} is before first_key {first}"),
                            ));
                            None
                        } else {
                            i16::try_from(l).ok()
                        }
                    })
                }
                (Some(first), Some(l)) if l < 0 => {
                    // -1 is the last argument: the fewest arguments must still reach first_key.
                    match min_args {
                        Some(min) if i64::from(min) + l < i64::from(first) => {
                            problems.push((
                                Some("last_key"),
                                format!(
                                    "{l} counts back past first_key {first} in a call with the \
                                     fewest arguments ({min})"
                                ),
                            ));
                            None
                        }
                        _ => i16::try_from(l).ok(),
                    }
                }
                (_, Some(0)) => {
                    problems.push((
                        Some("last_key"),
                        "0 is the command name: give the last key's index, or -1 for the last \
                         argument"
                            .into(),
                    ));
                    None
                }
                _ => None,
            };
            match (first, last, step) {
                (Some(first), Some(last), Some(step)) => Some(Keys::Range { first, last, step }),
                _ => None,
            }
        }
    };
    match (arity, keys) {
        (Some(arity), Some(keys)) if problems.is_empty() => Ok(Checked {
            name: name.to_string(),
            arity,
            flags,
            keys,
        }),
        _ => Err(problems),
    }
}

/// The declared commands, as specs the lookup and routing use like built-in ones.
#[derive(Debug, Default)]
pub struct CustomCommands {
    /// Sorted by name, case-insensitive. Names are kept as declared (Redis shows a module
    /// command's name as the module registered it: `FT.SEARCH`).
    specs: Vec<&'static CommandSpec>,
}

impl CustomCommands {
    /// The commands `declarations` declare, or every problem of them. Each spec is leaked:
    /// call this once per proxy start.
    pub fn build<'a>(
        declarations: impl IntoIterator<Item = (&'a str, &'a Declaration)>,
    ) -> Result<CustomCommands, Vec<DeclarationError>> {
        let specs = checked(declarations)?
            .into_iter()
            .map(|c| &*Box::leak(Box::new(c.into_spec())))
            .collect();
        Ok(CustomCommands { specs })
    }

    /// Every declared command, sorted by name.
    pub fn specs(&self) -> &[&'static CommandSpec] {
        &self.specs
    }

    /// Number of declared commands.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The declared command named `name`, case-insensitive.
    pub fn get(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        self.specs
            .binary_search_by(|spec| {
                let ours = spec.name.bytes().map(|b| b.to_ascii_lowercase());
                ours.cmp(name.iter().map(u8::to_ascii_lowercase))
            })
            .ok()
            .and_then(|i| self.specs.get(i).copied())
    }

    /// The spec of a request (`args[0]` = the command name in any case), if it is declared.
    pub fn lookup<A: AsRef<[u8]>>(&self, args: &[A]) -> Option<&'static CommandSpec> {
        self.get(args.first()?.as_ref())
    }
}

impl Checked {
    /// The spec, its strings and slices leaked (start-only, once per command).
    fn into_spec(self) -> CommandSpec {
        let (begin, find, first_key, last_key, step) = match self.keys {
            Keys::Range { first, last, step } => (
                BeginSearch::Index(first),
                FindKeys::Range {
                    // Relative to the first key; negative still counts from the end.
                    last_key: if last >= 0 {
                        last - i16::try_from(first).unwrap_or(i16::MAX)
                    } else {
                        last
                    },
                    key_step: step,
                    limit: 0,
                },
                i16::try_from(first).unwrap_or(i16::MAX),
                last,
                i16::try_from(step).unwrap_or(i16::MAX),
            ),
            // As Redis shows EVAL: no legacy range, movable keys.
            Keys::NumKeys { index, step } => (
                BeginSearch::Index(index),
                FindKeys::KeyNum {
                    key_num_idx: 0,
                    first_key: 1,
                    key_step: step,
                },
                0,
                0,
                0,
            ),
        };
        let flags = match self.keys {
            Keys::NumKeys { .. } => self.flags.union(Flags::MOVABLE_KEYS),
            Keys::Range { .. } => self.flags,
        };
        // What Redis gives a module command's legacy key range.
        let key_flags =
            KeySpecFlags::union_of(&[KeySpecFlags::RW, KeySpecFlags::ACCESS, KeySpecFlags::UPDATE]);
        let key_specs: &'static [KeySpec] = Box::leak(Box::new([KeySpec {
            begin,
            find,
            flags: key_flags,
            notes: "",
        }]));
        CommandSpec {
            name: Box::leak(self.name.into_boxed_str()),
            arity: self.arity,
            flags,
            first_key,
            last_key,
            step,
            acl_categories: Box::leak(acl_categories(flags).into_boxed_slice()),
            tips: &[],
            key_specs,
            subcommands: &[],
            group: "module",
            summary: "Declared in slotgate's [commands.custom]; routed by its declared keys.",
            since: "",
            complexity: "",
        }
    }
}

/// The ACL categories Redis implies from a command's flags (`setImplicitACLCategories`).
fn acl_categories(flags: Flags) -> Vec<&'static str> {
    let mut categories = Vec::new();
    if flags.contains(Flags::WRITE) {
        categories.push("@write");
    }
    if flags.contains(Flags::READONLY) {
        categories.push("@read");
    }
    categories.push(if flags.contains(Flags::FAST) {
        "@fast"
    } else {
        "@slow"
    });
    if flags.contains(Flags::BLOCKING) {
        categories.push("@blocking");
    }
    categories
}

#[cfg(test)]
mod tests;
