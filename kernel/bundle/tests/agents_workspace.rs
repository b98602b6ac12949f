//! The agents' workspace builds runloop-proto's sources through `agents/proto`; its
//! dependency list must stay the one of `kernel/proto`, or the two builds drift apart.

use std::collections::BTreeSet;
use std::path::Path;

fn dependency_names(relative: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest["dependencies"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_proto_shim_has_the_same_dependencies() {
    assert_eq!(
        dependency_names("agents/proto/Cargo.toml"),
        dependency_names("kernel/proto/Cargo.toml")
    );
}

#[test]
fn the_proto_shim_compiles_the_real_sources() {
    let shim = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/proto/Cargo.toml"),
    )
    .unwrap();
    let manifest: toml::Table = toml::from_str(&shim).unwrap();
    assert_eq!(
        manifest["lib"]["path"].as_str(),
        Some("../../kernel/proto/src/lib.rs")
    );
}
