//! `docs/COMMANDS.md` is generated from the command table and the proxy's own routing rules;
//! this test fails when the two drift apart. Regenerate with
//! `UPDATE_COMMANDS_DOC=1 cargo test --test it commands_doc`.

use slotgate::command::{self, CommandSpec};
use slotgate::session::service;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/COMMANDS.md");

fn display_name(spec: &CommandSpec) -> String {
    spec.name.replace('|', " ").to_uppercase()
}

fn render() -> String {
    let mut specs: Vec<&CommandSpec> = Vec::new();
    for spec in command::all() {
        if spec.subcommands.is_empty() {
            specs.push(spec);
        } else {
            specs.extend(spec.subcommands.iter());
        }
    }
    specs.sort_by(|a, b| (a.group, a.name).cmp(&(b.group, b.name)));

    let mut counts = std::collections::BTreeMap::new();
    for spec in &specs {
        *counts.entry(service(spec).0).or_insert(0) += 1;
    }
    let mut out = String::from(
        "# Redis 7.0 commands through slotgate\n\n\
         Generated from the command table (`src/command/table.rs`, read from a real Redis 7.0.15)\n\
         and the proxy's routing rules (`slotgate::session::service`) by `tests/it/commands_doc.rs`,\n\
         which fails when this file is out of date. Do not edit by hand.\n\n\
         - **local**: answered by slotgate itself.\n\
         - **routed**: forwarded unchanged to the master of its keys' slot. A multi-key command\n  \
           whose keys are in different slots gets `-CROSSSLOT`, exactly as from a cluster node.\n\
         - **split**: keys in several slots are split into one sub-request per slot and the\n  \
           replies merged as one Redis would answer.\n\
         - **fan-out**: sent to every master, replies merged.\n\
         - **pinned**: needs a connection of its own (transactions, blocking commands,\n  \
         pub/sub, WAIT): served on dedicated backend connections, never on the shared\n  \
         pipelined ones.\n\
         - **refused**: a clear `-ERR` naming the command and why; nothing is sent to an\n  \
           arbitrary node.\n\n",
    );
    out.push_str("| served | commands |\n|---|---:|\n");
    for (kind, n) in &counts {
        out.push_str(&format!("| {kind} | {n} |\n"));
    }
    let mut group = "";
    for spec in specs {
        if spec.group != group {
            group = spec.group;
            out.push_str(&format!(
                "\n## {group}\n\n| command | served | how |\n|---|---|---|\n"
            ));
        }
        let (kind, how) = service(spec);
        out.push_str(&format!("| {} | {kind} | {how} |\n", display_name(spec)));
    }
    // Hand-written: the results of redis-py's own suite (scripts/redis-py-suite).
    out.push_str(include_str!("../../docs/redis-py-suite.md"));
    out
}

#[test]
fn commands_doc_is_current() {
    let want = render();
    if std::env::var_os("UPDATE_COMMANDS_DOC").is_some() {
        std::fs::write(PATH, &want).expect("write docs/COMMANDS.md");
        return;
    }
    let have = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        have == want,
        "docs/COMMANDS.md is out of date: run UPDATE_COMMANDS_DOC=1 cargo test --test it commands_doc"
    );
}
