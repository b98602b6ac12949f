//! The crate's boundary, checked on the real dependency graph: `cargo tree` of this
//! package names neither wasmtime, SQLite (rusqlite, libsqlite3-sys) nor reqwest.

use std::process::Command;

/// Crates a client of the daemon must not link.
const FORBIDDEN: &[&str] = &[
    "wasmtime",
    "rusqlite",
    "libsqlite3-sys",
    "reqwest",
    "runloop-kernel",
];

#[test]
fn links_neither_wasmtime_nor_sqlite_nor_reqwest() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-p",
            "runloop-client",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.starts_with("runloop-client "), "{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !FORBIDDEN.contains(&name),
            "runloop-client links {name}:\n{tree}"
        );
    }
}
