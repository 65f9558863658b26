//! The binaries of this checkout, for tests that run them as processes.
//!
//! A test outside a binary's own package cannot use `CARGO_BIN_EXE_*`, and
//! a path into the shared target directory may hold a binary built from
//! another checkout. So the first call builds the binary with the cargo
//! running the tests (a no-op when it is fresh) and uses the path cargo
//! reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The path of binary `name` of package `package`, built from this checkout.
pub fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new(&cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "-p",
            package,
            "--bin",
            name,
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|error| panic!("running {cargo} build for {name}: {error}"));
    assert!(output.status.success(), "cargo build -p {package} --bin {name} failed");
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == name)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for {name}"));
    built.insert(name.to_owned(), path.clone());
    path
}

/// `grove-proxy`: `$GROVE_PROXY_BIN` when set (benchmarks run a release
/// build), else this checkout's.
pub fn grove_proxy() -> PathBuf {
    std::env::var_os("GROVE_PROXY_BIN").map_or_else(|| binary("grove-proxy", "grove-proxy"), PathBuf::from)
}

/// The `grove` CLI.
pub fn grove() -> PathBuf {
    binary("grove-publisher", "grove")
}
