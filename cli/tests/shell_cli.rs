//! `rlp completions <shell>` and the hidden `rlp man --out DIR`: what the Debian package
//! ships (packaging/scripts/build-deb.sh), generated from rlp's real clap command.

use std::process::{Command, Output};

fn rlp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlp"))
        .args(args)
        .output()
        .expect("spawn rlp")
}

fn stdout(args: &[&str]) -> String {
    let out = rlp(args);
    assert!(
        out.status.success(),
        "rlp {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_name_the_commands_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _rlp"),
        ("zsh", "#compdef rlp"),
        ("fish", "complete -c rlp"),
    ] {
        let script = stdout(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for command in ["run", "trace", "replay", "kb", "completions"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
        // Hidden commands stay out of completion.
        assert!(
            !script.contains("'man'"),
            "{shell} completes the hidden man"
        );
    }
}

#[test]
fn bash_completion_is_valid_bash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rlp.bash");
    std::fs::write(&file, stdout(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn an_unknown_shell_is_bad_input() {
    let out = rlp(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_writes_one_page_per_command_and_stays_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    stdout(&["man", "--out", out.to_str().unwrap()]);
    for (page, title) in [
        ("rlp.1", ".TH rlp 1"),
        ("rlp-run.1", ".TH rlp-run 1"),
        ("rlp-kb-query.1", ".TH rlp-kb-query 1"),
        ("rlp-completions.1", ".TH rlp-completions 1"),
    ] {
        let text =
            std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(title), "{page}: no {title:?}");
        assert!(text.contains(".SH SYNOPSIS"), "{page}: no synopsis");
    }
    assert!(
        !out.join("rlp-man.1").exists(),
        "the hidden man command got a page"
    );
    assert!(
        !stdout(&["--help"]).contains("  man "),
        "man shows in --help"
    );
}
