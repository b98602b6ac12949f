//! `agtop --man`: the man page the Debian package ships, from agtop's real clap command.

use std::process::Command;

#[test]
fn man_page_comes_from_the_clap_command_and_the_flag_is_hidden() {
    let out = Command::new(env!("CARGO_BIN_EXE_agtop"))
        .arg("--man")
        .output()
        .expect("spawn agtop");
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH agtop 1"), "{page}");
    assert!(page.contains("\\-\\-events"), "{page}");
    assert!(
        !page.contains("\\-\\-man"),
        "the hidden flag is in the page"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_agtop"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("--man"));
}
