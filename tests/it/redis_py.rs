//! redis-py, the Python client, through the proxy: pub/sub (including a handler thread),
//! MULTI/EXEC and WATCH transactions, SCAN. The checks live in `tests/py/redis_py_check.py`;
//! the venv comes from `scripts/ensure-python` (which `scripts/test` runs).

use crate::common;

use std::path::Path;
use std::process::Command;

#[test]
fn redis_py_pubsub_transactions_and_scan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = common::redis_py_python();
    let setup = common::start();
    let out = Command::new(&python)
        .arg(root.join("tests/py/redis_py_check.py"))
        .arg(setup.addr().to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "redis-py checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
