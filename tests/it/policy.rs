//! The proxy-side command policy: a deny list and Redis-style renames, configured once for
//! every node behind the proxy.

use crate::common;

use common::Raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_renamed_commands() {
    let setup = common::start_with(Default::default(), |c| {
        c.commands.deny = vec!["KEYS".into(), "CLIENT KILL".into()];
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
        (
            "client kill id 1",
            "-ERR slotgate: 'CLIENT KILL' is disabled by configuration (commands.deny)\r\n",
        ),
        ("CLIENT GETNAME", "$-1\r\n"),
        ("NUKE-EVERYTHING", "+OK\r\n"),
        ("DBSIZE", ":0\r\n"),
    ] {
        raw.send(format!("{command}\r\n").as_bytes());
        assert_eq!(raw.read_line(), want, "{command}");
    }
}

/// Before AUTH a client learns nothing of the policy: a denied or renamed-away command gets
/// NOAUTH like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_get_noauth_before_the_policy() {
    let setup = common::start_with(Default::default(), |c| {
        c.auth.password = Some(slotgate::config::Secret::new("pw"));
        c.commands.deny = vec!["KEYS".into()];
        c.commands.rename.insert("CONFIG".into(), String::new());
    });
    let mut raw = Raw::connect(setup.addr());
    for command in ["KEYS *", "CONFIG GET x", "GET k"] {
        raw.send(format!("{command}\r\n").as_bytes());
        assert_eq!(
            raw.read_line(),
            "-NOAUTH Authentication required.\r\n",
            "{command}"
        );
    }
    raw.send(b"AUTH pw\r\nKEYS *\r\n");
    assert_eq!(raw.read_line(), "+OK\r\n");
    assert!(raw.read_line().contains("commands.deny"));
}

#[test]
fn unknown_names_in_the_policy_are_config_errors() {
    let text = "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n[commands]\ndeny = [\"NOSUCH\", \"CLIENT NOSUCH\"]\n\
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
    assert!(
        errors.contains("commands.deny[1]: unknown command \"CLIENT NOSUCH\""),
        "{errors}"
    );
    assert!(errors.contains("commands.rename.GET"), "{errors}");
}

/// Node-administration commands would reach one arbitrary node: refused by default, each with
/// an error naming the setting; the ones listed in `commands.allow_admin` reach every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_are_refused_unless_allowed_and_then_reach_every_master() {
    let setup = common::start();
    let mut raw = Raw::connect(setup.addr());
    for command in [
        "CONFIG SET maxmemory-samples 7",
        "SHUTDOWN NOSAVE",
        "DEBUG SLEEP 0",
        "CLUSTER FAILOVER",
        "CLUSTER ADDSLOTS 1",
        "CLUSTER RESET",
        "SAVE",
        "CONFIG RESETSTAT",
        "ACL SETUSER someone on",
        "ACL DELUSER someone",
    ] {
        raw.send(format!("{command}\r\n").as_bytes());
        let line = raw.read_line();
        assert!(
            line.starts_with("-ERR slotgate: '") && line.contains("commands.allow_admin"),
            "{command}: {line:?}"
        );
    }
    drop(raw);

    let allowed = common::start_with(Default::default(), |c| {
        c.commands.allow_admin = vec!["CONFIG SET".into(), "config get".into()];
    });
    let mut raw = Raw::connect(allowed.addr());
    raw.send(b"CONFIG SET maxmemory-samples 7\r\n");
    assert_eq!(raw.read_line(), "+OK\r\n");
    raw.send(b"CONFIG GET maxmemory-samples\r\n");
    assert_eq!(
        raw.read_exactly(35),
        b"*2\r\n$17\r\nmaxmemory-samples\r\n$1\r\n7\r\n"
    );
    // Every master has it, seen directly.
    for port in allowed.cluster.master_ports() {
        let got = common::redis_cli(
            format!("127.0.0.1:{port}").parse().unwrap(),
            &["CONFIG", "GET", "maxmemory-samples"],
        );
        assert!(got.contains('7'), "master {port}: {got:?}");
    }
    // CONFIG RESETSTAT was not listed.
    raw.send(b"CONFIG RESETSTAT\r\n");
    assert!(raw.read_line().contains("commands.allow_admin"));
}

#[test]
fn allow_admin_names_only_keyless_commands_a_fan_out_can_serve() {
    let text = "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n[commands]\n\
                allow_admin = [\"MONITOR\", \"GET\", \"NOSUCH\", \"CONFIG SET\", \"DEBUG\"]\n";
    let errors = slotgate::config::Config::parse(text)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(errors.contains("commands.allow_admin[0]"), "{errors}");
    assert!(errors.contains("commands.allow_admin[1]"), "{errors}");
    assert!(errors.contains("commands.allow_admin[2]"), "{errors}");
    assert!(!errors.contains("commands.allow_admin[3]"), "{errors}");
    assert!(!errors.contains("commands.allow_admin[4]"), "{errors}");
}
