//! `rlp completions <shell>` (a completion script on stdout) and the hidden `rlp man --out
//! DIR` (one man page per command and subcommand), both generated from rlp's own clap
//! command, so they cannot drift from the parser. The Debian package ships their output
//! (`packaging/scripts/build-deb.sh`, `docs/packaging.md`).

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use crate::failure::Failure;

/// `rlp completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `rlp man` (hidden: for packagers).
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `rlp.1` and one `rlp-<command>.1` per subcommand into this directory
    /// (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<(), Failure> {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .map_err(|e| Failure::io(format!("write the completion script: {e}")))
}

/// Writes the man pages of `command` and of every subcommand into `args.out`.
pub fn man(args: ManArgs, command: clap::Command) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::io(format!("create {}: {e}", args.out.display())))?;
    clap_mangen::generate_to(command, &args.out).map_err(|e| {
        Failure::io(format!(
            "write the man pages into {}: {e}",
            args.out.display()
        ))
    })
}
