//! Finding a command's spec from the request's arguments, once per request.
//!
//! One open-addressing hash table indexes every command and every subcommand by its full
//! lower-case name (`get`, `client|setname`). It is built once, on first use, from the static
//! table. A lookup lower-cases the name into a stack buffer while hashing it, probes, and
//! compares; for a container command it repeats that with `container|sub`. No heap allocation.

use std::sync::OnceLock;

use super::custom::CustomCommands;
use super::{table, CommandSpec};

/// Longest full name we index. Redis' longest is `cluster|count-failure-reports` (29 bytes);
/// anything longer cannot be a command, so it is rejected before hashing.
const MAX_NAME: usize = 48;

/// The index: `buckets[h]` holds 1 + the position in `specs` of the name hashing to `h` (after
/// linear probing), or 0 for an empty bucket.
struct Index {
    buckets: Box<[u16]>,
    mask: usize,
    specs: Vec<&'static CommandSpec>,
}

static INDEX: OnceLock<Index> = OnceLock::new();

/// FNV-1a: short names, no attacker-controlled table growth (the key set is fixed), so a simple
/// multiplicative hash is enough and costs a couple of cycles per byte.
#[inline]
fn fnv_step(h: u32, byte: u8) -> u32 {
    (h ^ u32::from(byte)).wrapping_mul(0x0100_0193)
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

fn hash(name: &[u8]) -> u32 {
    name.iter().fold(FNV_OFFSET, |h, &b| fnv_step(h, b))
}

impl Index {
    fn build() -> Index {
        let mut specs = Vec::with_capacity(table::SPEC_COUNT);
        for cmd in table::COMMANDS {
            specs.push(cmd);
            specs.extend(cmd.subcommands.iter());
        }
        // Load factor below 1/4 keeps probe chains to one or two buckets.
        let size = (specs.len() * 4).next_power_of_two();
        let mask = size - 1;
        let mut buckets = vec![0u16; size].into_boxed_slice();
        for (pos, spec) in specs.iter().enumerate() {
            let mut h = hash(spec.name.as_bytes()) as usize & mask;
            while buckets[h] != 0 {
                h = (h + 1) & mask;
            }
            // The table holds a few hundred specs, far below u16::MAX.
            buckets[h] = u16::try_from(pos + 1).unwrap_or(u16::MAX);
        }
        Index {
            buckets,
            mask,
            specs,
        }
    }

    /// The spec named exactly `name` (already lower case), given its hash.
    #[inline]
    fn get(&self, name: &[u8], h: u32) -> Option<&'static CommandSpec> {
        let mut i = h as usize & self.mask;
        loop {
            let entry = *self.buckets.get(i)?;
            if entry == 0 {
                return None;
            }
            let spec = *self.specs.get(usize::from(entry) - 1)?;
            if spec.name.as_bytes() == name {
                return Some(spec);
            }
            i = (i + 1) & self.mask;
        }
    }
}

fn index() -> &'static Index {
    INDEX.get_or_init(Index::build)
}

/// Lower-cases `src` into `buf[at..]`, folding it into the running hash `h`.
/// Returns the new end and hash, or `None` when it does not fit or contains `|` (which no
/// command name does: without this check `CLIENT|KILL` would find a subcommand as a command).
#[inline]
fn append_lower(buf: &mut [u8; MAX_NAME], at: usize, src: &[u8], h: u32) -> Option<(usize, u32)> {
    let end = at.checked_add(src.len())?;
    let dst = buf.get_mut(at..end)?;
    let mut h = h;
    for (d, &s) in dst.iter_mut().zip(src) {
        if s == b'|' {
            return None;
        }
        let c = s.to_ascii_lowercase();
        *d = c;
        h = fnv_step(h, c);
    }
    Some((end, h))
}

/// Find the spec for a request given its args (`args[0]` = command name in any case).
///
/// For a container command (CLIENT, CONFIG, OBJECT, XINFO, ...) this returns the subcommand's
/// spec when `args[1]` names a known subcommand, else the container's spec (so the caller can
/// answer "unknown subcommand" or an arity error the way Redis does). Case-insensitive, no heap
/// allocation.
pub fn lookup<A: AsRef<[u8]>>(args: &[A]) -> Option<&'static CommandSpec> {
    lookup_counted(args).map(|(spec, _)| spec)
}

/// [`lookup`], plus the per-command counter index ([`super::stat_index`]) of the top-level
/// command it belongs to — known here for free, where finding a subcommand's container
/// afterwards would take a search.
pub fn lookup_counted<A: AsRef<[u8]>>(args: &[A]) -> Option<(&'static CommandSpec, usize)> {
    let index = index();
    let mut buf = [0u8; MAX_NAME];
    let (end, h) = append_lower(&mut buf, 0, args.first()?.as_ref(), FNV_OFFSET)?;
    let cmd = index.get(buf.get(..end)?, h)?;
    let counted = super::stat_index(Some(cmd));
    if cmd.subcommands.is_empty() {
        return Some((cmd, counted));
    }
    let Some(sub) = args.get(1) else {
        return Some((cmd, counted));
    };
    let sub_spec = (|| {
        let separator = buf.get_mut(end)?;
        *separator = b'|';
        let h = fnv_step(h, b'|');
        let (full_end, h) = append_lower(&mut buf, end + 1, sub.as_ref(), h)?;
        index.get(buf.get(..full_end)?, h)
    })();
    Some((sub_spec.unwrap_or(cmd), counted))
}

/// The longest spelling of a command name [`LookupCache`] keeps (Redis' longest name has 20
/// bytes); longer names are compared case-insensitively every time.
const SPELLING: usize = 24;

/// The last command a client looked up, to skip the hash lookup when it repeats it (clients
/// mostly do). Holds only commands without subcommands, whose spec depends on `args[0]` alone.
/// With [`LookupCache::with_custom`], a name the built-in table does not know is looked for
/// among the `[commands.custom]` declarations (counted under [`super::stat_index::OTHER`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct LookupCache {
    hit: Option<(&'static CommandSpec, usize)>,
    /// Declared commands, asked only when the built-in lookup misses.
    custom: Option<&'static CustomCommands>,
    /// The client's own spelling of the cached name (its case), compared byte for byte
    /// before the case-insensitive comparison; `spelt == 0`: none.
    spelling: [u8; SPELLING],
    spelt: u8,
}

/// Whether `name` is the first `spelt` bytes of `spelling`: a byte loop, cheaper for a
/// command name's few bytes than the `memcmp` call a slice comparison makes.
#[inline]
fn same_spelling(spelling: &[u8; SPELLING], spelt: u8, name: &[u8]) -> bool {
    usize::from(spelt) == name.len() && spelling.iter().zip(name).all(|(a, b)| a == b)
}

impl LookupCache {
    /// A cache that also finds the commands `custom` declares (`None`: the table only).
    pub fn with_custom(custom: Option<&'static CustomCommands>) -> LookupCache {
        LookupCache {
            custom,
            ..LookupCache::default()
        }
    }

    /// [`lookup_counted`], answered from the cache when `args[0]` names its command; then
    /// the declared commands, when the table has no such command.
    #[inline]
    pub fn lookup_counted<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
    ) -> Option<(&'static CommandSpec, usize)> {
        let name = args.first()?.as_ref();
        if let Some(hit) = self.hit {
            if !name.is_empty() && same_spelling(&self.spelling, self.spelt, name) {
                return Some(hit);
            }
            // A cached name holds no `|`, so no other spelling can match it.
            if hit.0.name.as_bytes().eq_ignore_ascii_case(name) {
                self.remember(name);
                return Some(hit);
            }
        }
        let found = lookup_counted(args).or_else(|| {
            let spec = self.custom?.lookup(args)?;
            Some((spec, super::stat_index::OTHER))
        });
        self.spelt = 0;
        if let Some((spec, _)) = found {
            if spec.subcommands.is_empty() && !spec.name.contains('|') {
                self.hit = found;
                self.remember(name);
            }
        }
        found
    }

    /// Keep `name`, which names the cached command, as the client spelt it.
    fn remember(&mut self, name: &[u8]) {
        match self.spelling.get_mut(..name.len()) {
            Some(spelling) => {
                spelling.copy_from_slice(name);
                self.spelt = name.len() as u8;
            }
            None => self.spelt = 0,
        }
    }
}

/// A small number naming `spec` (0 for a spec outside the table), so "the last command" can
/// be kept in an atomic; [`by_id`] turns it back.
pub fn id_of(spec: &CommandSpec) -> u16 {
    let index = index();
    let name = spec.name.as_bytes();
    let mut i = hash(name) as usize & index.mask;
    loop {
        let Some(&entry) = index.buckets.get(i) else {
            return 0;
        };
        match index.specs.get(usize::from(entry).wrapping_sub(1)) {
            None => return 0,
            Some(s) if s.name.as_bytes() == name => return entry,
            Some(_) => i = (i + 1) & index.mask,
        }
    }
}

/// The spec [`id_of`] named `id`.
pub fn by_id(id: u16) -> Option<&'static CommandSpec> {
    let index = index();
    index.specs.get(usize::from(id).checked_sub(1)?).copied()
}

/// The spec with this full name (`get`, `CLIENT|kill`), case-insensitive, as `COMMAND INFO`
/// and `COMMAND DOCS` resolve their arguments.
pub(crate) fn lookup_full_name(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    let dst = buf.get_mut(..name.len())?;
    for (d, s) in dst.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = buf.get(..name.len())?;
    index().get(lower, hash(lower))
}
