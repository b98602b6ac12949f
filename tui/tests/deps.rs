//! The crate's boundary, checked on the real dependency graph: `cargo tree` of agtop names
//! neither the kernel, wasmtime, SQLite (rusqlite, libsqlite3-sys) nor reqwest.

use std::process::Command;

/// Crates agtop must not link.
const FORBIDDEN: &[&str] = &[
    "runloop-kernel",
    "wasmtime",
    "rusqlite",
    "libsqlite3-sys",
    "reqwest",
];

#[test]
fn links_neither_the_kernel_nor_wasmtime_nor_sqlite_nor_reqwest() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-p",
            "runloop-tui",
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
    assert!(tree.starts_with("runloop-tui "), "{tree}");
    assert!(tree.contains("runloop-client "), "{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !FORBIDDEN.contains(&name),
            "runloop-tui links {name}:\n{tree}"
        );
    }
}
