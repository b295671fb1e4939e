//! Configuration errors and the command line, through the real binary.

use std::io::Write;
use std::process::Command;

fn slotgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(args)
        .output()
        .expect("run slotgate")
}

#[test]
fn reference_config_passes_check_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/slotgate.toml");
    let out = slotgate(&["check-config", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_config_reports_every_problem_with_its_key_path() {
    let mut file = std::env::temp_dir();
    file.push(format!("slotgate-bad-{}.toml", std::process::id()));
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "[proxy]\nlisten = \"nowhere\"\nlisten_port = 1\n[cluster]\nseeds = []\n[backend]\nrequest_timeout_ms = 0\n[bogus]\nx = 1").unwrap();
    drop(f);
    let out = slotgate(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are reported first (all of them), before values are checked.
    assert!(
        stderr.contains("proxy.listen_port: unknown key"),
        "{stderr}"
    );
    assert!(stderr.contains("bogus: unknown key"), "{stderr}");

    std::fs::write(
        &file,
        "[proxy]\nlisten = \"nowhere\"\n[cluster]\nseeds = []\n[backend]\nrequest_timeout_ms = 0\n",
    )
    .unwrap();
    let out = slotgate(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "proxy.listen",
        "cluster.seeds",
        "backend.request_timeout_ms",
    ] {
        assert!(
            stderr.contains(&format!("{path}:")),
            "missing {path} in:\n{stderr}"
        );
    }

    std::fs::write(&file, "[backend]\nrequest_timeout_ms = \"soon\"\n").unwrap();
    let stderr =
        String::from_utf8_lossy(&slotgate(&["check-config", file.to_str().unwrap()]).stderr)
            .into_owned();
    assert!(stderr.contains("backend.request_timeout_ms"), "{stderr}");
    std::fs::remove_file(&file).ok();
}

#[test]
fn missing_file_and_bad_flags_fail_clearly() {
    let out = slotgate(&["check-config", "/nonexistent/slotgate.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let out = slotgate(&["--listen", "127.0.0.1:0", "--workers", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.seeds"));

    let out = slotgate(&["--cluster", "127.0.0.1:1", "--log-level", "loud["]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.level"));
}

#[test]
fn environment_variables_configure_a_run_without_a_file() {
    // Invalid values prove the variables were read: validation names their keys.
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .env("SLOTGATE_CLUSTER", "127.0.0.1:1")
        .env("SLOTGATE_ADMIN_LISTEN", "no-port")
        .env("SLOTGATE_LOG_FORMAT", "json")
        .output()
        .expect("run slotgate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin.listen: \"no-port\" is not HOST:PORT"),
        "{stderr}"
    );

    // A flag wins over its variable.
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .env("SLOTGATE_LOG_FORMAT", "xml")
        .args([
            "--log-format",
            "text",
            "--cluster",
            "127.0.0.1:1",
            "--listen",
            "nowhere",
        ])
        .output()
        .expect("run slotgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("proxy.listen: \"nowhere\" is not HOST:PORT"),
        "{stderr}"
    );
}

#[test]
fn check_config_reads_the_tls_files_and_warns_about_exposure() {
    let file = std::env::temp_dir().join(format!("slotgate-tls-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[proxy]\nlisten = \"0.0.0.0:6380\"\n[cluster]\nseeds = [\"127.0.0.1:7000\"]\n\
         [tls]\nlisten = \"127.0.0.1:6390\"\ncert_file = \"/nonexistent/proxy.crt\"\n\
         key_file = \"/nonexistent/proxy.key\"\n",
    )
    .unwrap();
    let out = slotgate(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.cert_file: cannot read"), "{stderr}");
    assert!(stderr.contains("tls.key_file: cannot read"), "{stderr}");

    // Valid otherwise: OK, with a warning for the listener on every interface.
    std::fs::write(
        &file,
        "[proxy]\nlisten = \"0.0.0.0:6380\"\n[cluster]\nseeds = [\"127.0.0.1:7000\"]\n",
    )
    .unwrap();
    let out = slotgate(&["check-config", file.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: proxy.listen = \"0.0.0.0:6380\" is reachable"),
        "{stderr}"
    );
    std::fs::remove_file(&file).ok();
}
