//! The proxy-side command policy: a deny list and Redis-style renames, configured once for
//! every node behind the proxy.

mod common;

use common::Raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_renamed_commands() {
    let setup = common::start_with(Default::default(), |c| {
        c.commands.deny = vec!["KEYS".into()];
        c.commands
            .rename
            .insert("FLUSHALL".into(), "NUKE-EVERYTHING".into());
        c.commands.rename.insert("GET".into(), "FETCH".into());
        c.commands.rename.insert("DEBUG".into(), String::new());
    });
    let mut raw = Raw::connect(setup.addr());
    raw.send(b"SET k v\r\nFETCH k\r\n");
    assert_eq!(raw.read_line(), "+OK\r\n");
    assert_eq!(raw.read_line(), "$1\r\n");
    assert_eq!(raw.read_line(), "v\r\n");
    for (command, want) in [
        (
            "GET k",
            "-ERR unknown command 'GET', with args beginning with: \r\n",
        ),
        (
            "DEBUG SLEEP 0",
            "-ERR unknown command 'DEBUG', with args beginning with: \r\n",
        ),
        (
            "KEYS *",
            "-ERR slotgate: 'KEYS' is disabled by configuration (commands.deny)\r\n",
        ),
        ("NUKE-EVERYTHING", "+OK\r\n"),
        ("DBSIZE", ":0\r\n"),
    ] {
        raw.send(format!("{command}\r\n").as_bytes());
        assert_eq!(raw.read_line(), want, "{command}");
    }
}

#[test]
fn unknown_names_in_the_policy_are_config_errors() {
    let text = "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n[commands]\ndeny = [\"NOSUCH\"]\n\
                [commands.rename]\nGET = \"SET\"\n";
    let errors = slotgate::config::Config::parse(text)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("commands.deny[0]: unknown command"),
        "{errors}"
    );
    assert!(errors.contains("commands.rename.GET"), "{errors}");
}
