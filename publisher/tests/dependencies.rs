//! The `grove` CLI compiles no server: no object-store SDK, database, HTTP
//! server or proxy framework. Its build stays small and fast, and a CLI bug
//! cannot reach server code.

use std::process::Command;

/// Packages the CLI must never depend on, however indirectly.
const SERVER_CRATES: &[&str] = &[
    "aws-config",
    "aws-sdk-s3",
    "aws-smithy-runtime",
    "redb",
    "pingora",
    "pingora-core",
    "axum",
    "governor",
    "grove-objects",
    "grove-node",
    "grove-proxy",
];

#[test]
fn the_cli_depends_on_no_server_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "-p",
            "grove-publisher",
            "-e",
            "normal,features",
            "--prefix",
            "none",
            "--locked",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let packages: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(
        packages.contains(&"grove-core"),
        "the tree lists the CLI's dependencies:\n{tree}"
    );
    for forbidden in SERVER_CRATES {
        assert!(!packages.contains(forbidden), "the CLI depends on {forbidden}:\n{tree}");
    }
    // reqwest brings hyper's client; its server half must stay out.
    assert!(
        !tree.lines().any(|line| line.starts_with("hyper feature \"server\"")),
        "the CLI compiles hyper's server:\n{tree}"
    );
}
