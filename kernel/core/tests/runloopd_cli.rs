//! `runloopd --man`: the man page the Debian package ships, from runloopd's real clap
//! command (packaging/scripts/build-deb.sh); it names both modes' places.

use std::process::Command;

#[test]
fn man_page_comes_from_the_clap_command_and_the_flag_is_hidden() {
    let out = Command::new(env!("CARGO_BIN_EXE_runloopd"))
        .arg("--man")
        .output()
        .expect("spawn runloopd");
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH runloopd 1"), "{page}");
    assert!(page.contains("\\-\\-system"), "{page}");
    assert!(page.contains("/run/runloop/rmp.sock"), "{page}");
    assert!(
        !page.contains("\\-\\-man"),
        "the hidden flag is in the page"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_runloopd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("--man"));
}
