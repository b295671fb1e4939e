//! INFO through the proxy: the node sections (memory, persistence, stats, CPU, latency
//! statistics) merged field by field over the masters, and the proxy's own sections and the
//! masters' put together in Redis' section order. Pure.
//!
//! A field is merged by what it counts ([`how`]): bytes, keys, commands, seconds of CPU and
//! events are summed; flags, durations, "in progress" gauges and percentiles take the highest
//! value; `rdb_last_save_time` the oldest; `…_status` is `ok` only when every master's is;
//! other text fields (policies, the allocator's name) are the first master's (masters in
//! address order). Ratios and percentages are computed again from the summed bytes, as Redis
//! computes them, and `…_human` fields from their summed byte counts. Where the proxy has a
//! field of its own (`# Stats`: connections, commands, ops per second, network bytes, counted
//! from the client's side, a split command once), it keeps it and the masters' is dropped.

use bytes::Bytes;

/// Sections the proxy merges field by field ([`merge_section`]), by header.
pub const FIELD_SECTIONS: &[&str] = &["# Memory", "# Persistence", "# Stats", "# CPU"];

/// Redis 7.0's section order, with the proxy's own sections (`# Proxy`, `# Hotkeys`,
/// `# Migration`) placed among them; a section not named here follows, in the order met.
const ORDER: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "proxy",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "hotkeys",
    "migration",
    "keyspace",
    "slotgate",
];

/// How a field's values over the masters make one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    Sum,
    /// The sum, or 0 (no limit) when any is 0: `maxmemory`.
    SumUnlessZero,
    Max,
    Min,
    /// Computed again from the merged fields ([`computed`]).
    Computed,
}

/// How field `name` of section `header` merges (for numbers; text is [`merge_text`]'s).
fn how(header: &str, name: &str) -> How {
    if name.ends_with("_human") {
        return How::Computed;
    }
    match header {
        "# Memory" => match name {
            "used_memory_peak_perc"
            | "used_memory_dataset_perc"
            | "allocator_frag_ratio"
            | "allocator_rss_ratio"
            | "rss_overhead_ratio"
            | "mem_fragmentation_ratio" => How::Computed,
            "maxmemory" => How::SumUnlessZero,
            // One machine's, or loaded alike on every master.
            "total_system_memory"
            | "number_of_cached_scripts"
            | "number_of_functions"
            | "number_of_libraries"
            | "active_defrag_running" => How::Max,
            _ => How::Sum,
        },
        "# Persistence" => match name {
            "rdb_last_save_time" => How::Min,
            "rdb_changes_since_last_save"
            | "rdb_saves"
            | "aof_rewrites"
            | "current_save_keys_processed"
            | "current_save_keys_total"
            | "rdb_last_load_keys_expired"
            | "rdb_last_load_keys_loaded" => How::Sum,
            _ => How::Max,
        },
        "# Stats" => match name {
            "expired_stale_perc"
            | "current_eviction_exceeded_time"
            | "latest_fork_usec"
            | "current_active_defrag_time" => How::Max,
            _ => How::Sum,
        },
        "# Latencystats" => How::Max,
        _ => How::Sum,
    }
}

/// A number as INFO prints it: its value (exact when an integer), its decimals, and whether
/// a `%` follows.
#[derive(Clone, Copy, Debug)]
struct Number {
    value: f64,
    int: Option<i64>,
    decimals: usize,
    percent: bool,
}

fn number(text: &str) -> Option<Number> {
    let (digits, percent) = match text.strip_suffix('%') {
        Some(d) => (d, true),
        None => (text, false),
    };
    let decimals = digits.split_once('.').map_or(0, |(_, f)| f.len());
    let int = if decimals == 0 {
        Some(digits.parse::<i64>().ok()?)
    } else {
        None
    };
    let value = match int {
        Some(n) => n as f64,
        None => digits.parse::<f64>().ok()?,
    };
    Some(Number {
        value,
        int,
        decimals,
        percent,
    })
}

impl Number {
    fn render(self) -> String {
        let suffix = if self.percent { "%" } else { "" };
        if let Some(n) = self.int {
            format!("{n}{suffix}")
        } else {
            format!("{:.*}{suffix}", self.decimals, self.value)
        }
    }
}

/// Values combined by `how` (never [`How::Computed`], which is done afterwards).
fn combine(how: How, values: &[Number]) -> Option<Number> {
    let first = *values.first()?;
    if let Some(ints) = values.iter().map(|n| n.int).collect::<Option<Vec<i64>>>() {
        let n = match how {
            How::Max => ints.iter().copied().max()?,
            How::Min => ints.iter().copied().min()?,
            How::SumUnlessZero if ints.contains(&0) => 0,
            How::Sum | How::SumUnlessZero | How::Computed => {
                ints.iter().fold(0i64, |a, b| a.saturating_add(*b))
            }
        };
        return Some(Number {
            value: n as f64,
            int: Some(n),
            ..first
        });
    }
    let value = match how {
        How::Max => values.iter().map(|n| n.value).fold(f64::MIN, f64::max),
        How::Min => values.iter().map(|n| n.value).fold(f64::MAX, f64::min),
        How::SumUnlessZero if values.iter().any(|n| n.value == 0.0) => 0.0,
        How::Sum | How::SumUnlessZero | How::Computed => values.iter().map(|n| n.value).sum(),
    };
    Some(Number {
        value,
        int: None,
        ..first
    })
}

/// Text values: the same on every master, or `ok` unless some `…_status` is not (then the
/// first that is not), else the first master's.
fn merge_text(name: &str, values: &[&str]) -> String {
    let first = values.first().copied().unwrap_or_default();
    if name.ends_with("_status") {
        return values
            .iter()
            .find(|v| **v != "ok")
            .copied()
            .unwrap_or(first)
            .to_string();
    }
    first.to_string()
}

/// The lines of section `header` in `text` (without the header), as `(name, value)`.
fn section_fields<'a>(text: &'a str, header: &str) -> Vec<(&'a str, &'a str)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if line.starts_with('#') {
            inside = line.eq_ignore_ascii_case(header);
            continue;
        }
        if inside {
            if let Some(pair) = line.split_once(':') {
                out.push(pair);
            }
        }
    }
    out
}

/// Whether some text has section `header`.
pub fn has_section(texts: &[Bytes], header: &str) -> bool {
    texts.iter().any(|t| {
        String::from_utf8_lossy(t)
            .lines()
            .any(|l| l.trim_end().eq_ignore_ascii_case(header))
    })
}

/// Section `header` of every master's INFO `texts` merged field by field (see [`how`]), in
/// the first master's field order, then fields only later masters have.
pub fn merge_section(texts: &[Bytes], header: &str) -> String {
    let texts: Vec<String> = texts
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let mut fields: Vec<(&str, Vec<&str>)> = Vec::new();
    for text in &texts {
        for (name, value) in section_fields(text, header) {
            match fields.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value),
                None => fields.push((name, vec![value])),
            }
        }
    }
    let mut merged: Vec<(String, String)> = fields
        .iter()
        .map(|(name, values)| (name.to_string(), merge_values(header, name, values)))
        .collect();
    computed(header, &mut merged);
    let mut out = format!("{header}\r\n");
    for (name, value) in merged {
        out.push_str(&format!("{name}:{value}\r\n"));
    }
    out
}

/// One field's values merged: numbers by [`how`], `a=1,b=2` lists subfield by subfield,
/// text by [`merge_text`].
fn merge_values(header: &str, name: &str, values: &[&str]) -> String {
    let how = how(header, name);
    let numbers: Option<Vec<Number>> = values.iter().map(|v| number(v)).collect();
    if let Some(merged) = numbers.as_deref().and_then(|n| combine(how, n)) {
        return merged.render();
    }
    if values.iter().all(|v| v.contains('=')) {
        let lists: Vec<Vec<(&str, &str)>> = values
            .iter()
            .map(|v| v.split(',').filter_map(|p| p.split_once('=')).collect())
            .collect();
        let mut subfields: Vec<(&str, Vec<&str>)> = Vec::new();
        for list in &lists {
            for &(sub, value) in list {
                match subfields.iter_mut().find(|(n, _)| *n == sub) {
                    Some((_, values)) => values.push(value),
                    None => subfields.push((sub, vec![value])),
                }
            }
        }
        return subfields
            .iter()
            .map(|(sub, values)| format!("{sub}={}", merge_values(header, name, values)))
            .collect::<Vec<_>>()
            .join(",");
    }
    merge_text(name, values)
}

/// The fields of `header` computed again from the merged ones: `…_human` from its bytes;
/// in `# Memory` the percentages and ratios, as Redis computes them.
fn computed(header: &str, merged: &mut [(String, String)]) {
    let get = |merged: &[(String, String)], name: &str| -> f64 {
        merged
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| number(v))
            .map_or(0.0, |n| n.value)
    };
    let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let mut updates: Vec<(usize, String)> = Vec::new();
    for (at, (name, _)) in merged.iter().enumerate() {
        if let Some(base) = name.strip_suffix("_human") {
            if merged.iter().any(|(n, _)| n == base) {
                updates.push((at, bytes_to_human(get(merged, base) as u64)));
            }
            continue;
        }
        if header != "# Memory" {
            continue;
        }
        let g = |n: &str| get(merged, n);
        let rss = g("allocator_resident") + g("rss_overhead_bytes");
        let value = match name.as_str() {
            "used_memory_peak_perc" => {
                format!(
                    "{:.2}%",
                    ratio(g("used_memory") * 100.0, g("used_memory_peak"))
                )
            }
            "used_memory_dataset_perc" => format!(
                "{:.2}%",
                ratio(
                    g("used_memory_dataset") * 100.0,
                    g("used_memory") - g("used_memory_startup")
                )
            ),
            "allocator_frag_ratio" => {
                format!(
                    "{:.2}",
                    ratio(g("allocator_active"), g("allocator_allocated"))
                )
            }
            "allocator_rss_ratio" => {
                format!(
                    "{:.2}",
                    ratio(g("allocator_resident"), g("allocator_active"))
                )
            }
            "rss_overhead_ratio" => format!("{:.2}", ratio(rss, g("allocator_resident"))),
            "mem_fragmentation_ratio" => format!(
                "{:.2}",
                ratio(
                    g("used_memory_rss"),
                    g("used_memory_rss") - g("mem_fragmentation_bytes")
                )
            ),
            _ => continue,
        };
        updates.push((at, value));
    }
    for (at, value) in updates {
        merged[at].1 = value;
    }
}

/// Redis' `bytesToHuman`: `123B`, `1.50K`, `2.00M`, `3.10G` …
pub fn bytes_to_human(n: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1 << 10, "K"),
        (1 << 20, "M"),
        (1 << 30, "G"),
        (1 << 40, "T"),
        (1 << 50, "P"),
    ];
    if n < 1024 {
        return format!("{n}B");
    }
    for (i, (size, unit)) in UNITS.iter().enumerate() {
        if UNITS.get(i + 1).is_none_or(|(next, _)| n < *next) {
            return format!("{:.2}{unit}", n as f64 / *size as f64);
        }
    }
    format!("{n}B")
}

/// The proxy's own INFO sections (`proxy`) and the masters' merged ones (`nodes`) as one
/// reply text, in Redis' section order ([`ORDER`]); a section both have is the proxy's
/// fields, then the masters' fields the proxy does not have.
pub fn put_together(proxy: &str, nodes: &str) -> String {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for (text, from_proxy) in [(proxy, true), (nodes, false)] {
        let mut current: Option<usize> = None;
        for line in text.lines().map(str::trim_end) {
            if let Some(name) = line.strip_prefix("# ") {
                let at = sections
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case(name))
                    .unwrap_or_else(|| {
                        sections.push((name.to_string(), Vec::new()));
                        sections.len() - 1
                    });
                current = Some(at);
                continue;
            }
            let (Some(at), false) = (current, line.is_empty()) else {
                continue;
            };
            let lines = &mut sections[at].1;
            let key = line.split_once(':').map_or(line, |(k, _)| k);
            let known = !from_proxy
                && lines
                    .iter()
                    .any(|l| l.split_once(':').map_or(l.as_str(), |(k, _)| k) == key);
            if !known {
                lines.push(line.to_string());
            }
        }
    }
    let rank = |name: &str| {
        ORDER
            .iter()
            .position(|o| o.eq_ignore_ascii_case(name))
            .unwrap_or(ORDER.len())
    };
    // Stable: sections not in ORDER keep the order they were met in.
    sections.sort_by_key(|(name, _)| rank(name));
    let rendered: Vec<String> = sections
        .into_iter()
        .map(|(name, lines)| {
            let mut out = format!("# {name}\r\n");
            for line in lines {
                out.push_str(&line);
                out.push_str("\r\n");
            }
            out
        })
        .collect();
    rendered.join("\r\n")
}

#[cfg(test)]
mod tests;
