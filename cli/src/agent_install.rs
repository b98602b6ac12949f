//! `rlp agent install` and `rlp agent rollback`: registering a verified bundle where
//! openings find it, keeping the version it replaces.
//!
//! Layout under the agents directory (`~/.runloop/agents`, system mode
//! `/var/lib/runloop/agents`, both on the openings' search path):
//!
//! ```text
//! <name>                       -> .store/<name>/<version>-<blake3 prefix>   (symlink)
//! .store/<name>/<version>-<…>/ the installed bundles (current and previous)
//! .store/<name>/previous       -> <the version before>                   (symlink)
//! ```
//!
//! `<name>` is switched by renaming a new symlink over it, so a reader sees the old bundle
//! or the new one, never none. Only the current and the previous version are kept.
//! Rollback swaps them. Install loads the bundle under the config's trust roots before
//! anything is written, and again from its installed copy; the kernel loads it again at
//! every start, so a bundle tampered with after install still never runs.
//!
//! Installs and rollbacks of the same agents directory take turns: each holds an exclusive
//! advisory lock (`flock`) on `<agents>/.lock` from reading the current links to the last
//! one it writes, so two at once end with one version current and the other previous.
//! Verifying and asking the person happen before the lock; a held lock is waited for, up
//! to [`LOCK_WAIT_MS`], with a message.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::{Component, Path, PathBuf};

use clap::Args;
use runloop_bundle::{Bundle, MANIFEST_FILE, SIGNATURE_FILE, TOOLS_FILE};
use serde_json::json;

use crate::agent_trust::{bundle_failure, capability_lines, signer};
use crate::failure::Failure;
use crate::kernel_client::{KernelArgs, load_config};

/// The directory of installed bundles' versions, inside the agents directory.
const STORE_DIR: &str = ".store";
/// The link to the version before the current one, inside `.store/<name>`.
const PREVIOUS_LINK: &str = "previous";
/// Most entries a bundle archive may hold.
const ARCHIVE_ENTRIES_MAX: usize = 64;
/// Most bytes a bundle archive may unpack to (the module's limit plus the small files).
const ARCHIVE_BYTES_MAX: u64 = runloop_bundle::WASM_BYTES_MAX + 4 * 1024 * 1024;
/// Hex digits of the module digest in a version directory's name.
const DIGEST_PREFIX_LEN: usize = 12;
/// The lock file installs and rollbacks take turns on, inside the agents directory.
const LOCK_FILE: &str = ".lock";
/// Longest wait for another install or rollback to release the lock.
const LOCK_WAIT_MS: u64 = 60_000;
/// How often a held lock is tried again.
const LOCK_POLL_MS: u64 = 50;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A bundle directory, or a `.tar.gz` of one (the bundle's files at the top or in one
    /// directory).
    #[arg(value_name = "BUNDLE")]
    source: PathBuf,
    /// Install without asking (needed when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
    /// Print {"name", "version", "dir", "signed_by", "root", "capabilities", "previous"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The installed agent's name.
    #[arg(value_name = "NAME")]
    name: String,
    /// Print {"name", "version", "dir", "previous"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

/// The agents directory of the config's mode.
fn agents_dir(config: &runloop_kernel::config::Config) -> PathBuf {
    config.mode.state_dir().join("agents")
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::io(format!("{what} {}: {e}", path.display()))
}

/// Unpacks a bundle archive into `into` (regular files and directories only, no path
/// leaving it, bounded in entries and bytes); returns the directory holding the manifest.
fn unpack(archive: &Path, into: &Path) -> Result<PathBuf, Failure> {
    let file = std::fs::File::open(archive).map_err(|e| io("open", archive, e))?;
    let bad =
        |detail: String| Failure::invalid("BadArchive", format!("{}: {detail}", archive.display()));
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
    let mut total = 0u64;
    for (index, entry) in entries.enumerate() {
        if index >= ARCHIVE_ENTRIES_MAX {
            return Err(bad(format!("more than {ARCHIVE_ENTRIES_MAX} entries")));
        }
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let plain = path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain || path.components().count() > 3 {
            return Err(bad(format!("entry {} leaves the bundle", path.display())));
        }
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(format!(
                "entry {} is not a regular file or directory",
                path.display()
            )));
        }
        total += entry.header().size().map_err(|e| bad(e.to_string()))?;
        if total > ARCHIVE_BYTES_MAX {
            return Err(bad(format!(
                "unpacks to more than {ARCHIVE_BYTES_MAX} bytes"
            )));
        }
        entry.unpack_in(into).map_err(|e| bad(e.to_string()))?;
    }
    if into.join(MANIFEST_FILE).is_file() {
        return Ok(into.to_owned());
    }
    let mut dirs = std::fs::read_dir(into)
        .map_err(|e| io("read", into, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(MANIFEST_FILE).is_file());
    match (dirs.next(), dirs.next()) {
        (Some(dir), None) => Ok(dir),
        _ => Err(bad(format!(
            "no {MANIFEST_FILE} at its top or in exactly one directory"
        ))),
    }
}

/// Asks the person on the terminal; refuses when there is none.
fn confirm(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::invalid(
            "NotConfirmed",
            "stdin is not a terminal, so nobody can confirm the capabilities above; pass --yes",
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .take(64)
        .read_line(&mut answer)
        .map_err(|e| Failure::io(format!("read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Copies the files a bundle consists of (nothing else) from `from` to the new `to`.
fn copy_bundle(bundle: &Bundle, to: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(to).map_err(|e| io("create", to, e))?;
    let manifest = bundle.manifest();
    let mut files = vec![
        MANIFEST_FILE.to_owned(),
        manifest.caps_file().as_str().to_owned(),
        manifest.wasm_file().as_str().to_owned(),
    ];
    for optional in [SIGNATURE_FILE, TOOLS_FILE] {
        if bundle.dir().join(optional).is_file() {
            files.push(optional.to_owned());
        }
    }
    for file in files {
        let from = bundle.dir().join(&file);
        std::fs::copy(&from, to.join(&file)).map_err(|e| io("copy", &from, e))?;
    }
    Ok(())
}

/// Points the symlink `link` at `target`, atomically (a new link renamed over it).
fn point(link: &Path, target: &Path) -> Result<(), Failure> {
    let tmp = link.with_file_name(format!(
        ".{}.link-{}",
        link.file_name().and_then(|n| n.to_str()).unwrap_or("agent"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| io("link", &tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| io("rename", link, e))
}

/// The exclusive lock on an agents directory; released when dropped (the file closes).
#[derive(Debug)]
struct StoreLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock on `agents` (creating its lock file), waiting for another
/// install or rollback to finish, at most [`LOCK_WAIT_MS`]. The lock is `flock`'s, so it
/// goes with the process: one that dies never leaves it held.
fn lock_store(agents: &Path) -> Result<StoreLock, Failure> {
    let path = agents.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("open", &path, e))?;
    let mut waited_ms = 0;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StoreLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &path, e)),
        }
        if waited_ms == 0 {
            eprintln!(
                "waiting for another `rlp agent install` or `rollback` in {} to finish (lock {})",
                agents.display(),
                path.display()
            );
        }
        if waited_ms >= LOCK_WAIT_MS {
            // The world's doing, not bad input: exit 1, like the filesystem failing.
            return Err(Failure {
                name: "Busy".into(),
                ..Failure::io(format!(
                    "{} is still locked by another install or rollback after {}s; try again",
                    path.display(),
                    LOCK_WAIT_MS / 1000
                ))
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(LOCK_POLL_MS));
        waited_ms += LOCK_POLL_MS;
    }
}

/// The version directory name a symlink `link` points at, if it is a symlink.
fn link_target(link: &Path) -> Option<PathBuf> {
    std::fs::read_link(link).ok()
}

pub fn install(args: InstallArgs) -> Result<(), Failure> {
    let json = args.json;
    install_inner(args).map_err(|f| f.json(json))
}

fn install_inner(args: InstallArgs) -> Result<(), Failure> {
    let config = load_config(&args.kernel)?;
    let agents = agents_dir(&config);
    let store = agents.join(STORE_DIR);
    std::fs::create_dir_all(&store).map_err(|e| io("create", &store, e))?;
    // An archive is unpacked beside the store, so nothing it holds is read before it is
    // verified, and the staging directory goes away whatever happens.
    let staging = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempdir_in(&store)
        .map_err(|e| io("create a staging directory in", &store, e))?;
    let source = if args.source.is_dir() {
        args.source.clone()
    } else if args.source.is_file() {
        unpack(&args.source, staging.path())?
    } else {
        return Err(Failure::invalid(
            "NoSuchBundle",
            format!(
                "{} is neither a bundle directory nor a .tar.gz",
                args.source.display()
            ),
        ));
    };
    let bundle = Bundle::load(&source, &config.trust).map_err(|e| bundle_failure(&e))?;
    let manifest = bundle.manifest();
    let name = manifest.name().as_str().to_owned();
    let version = manifest.version().to_string();
    let (key_id, root) = signer(&bundle);
    let caps = capability_lines(&bundle);
    if !args.yes {
        eprintln!(
            "{name} {version}, signed by {}",
            match (&root, &key_id) {
                (Some(root), Some(id)) => format!("{root} ({id})"),
                _ => "nobody".into(),
            }
        );
        eprintln!("it may:");
        for line in &caps {
            eprintln!("  {line}");
        }
        if caps.is_empty() {
            eprintln!("  (nothing: no host calls)");
        }
        if !confirm(&format!("install {name} {version}?"))? {
            return Err(Failure::invalid("NotConfirmed", "not installed"));
        }
    }
    let _lock = lock_store(&agents)?;
    let leaf = format!(
        "{version}-{}",
        &manifest.wasm_blake3().to_hex()[..DIGEST_PREFIX_LEN]
    );
    let versions = store.join(&name);
    std::fs::create_dir_all(&versions).map_err(|e| io("create", &versions, e))?;
    let link = agents.join(&name);
    // A bundle someone copied in by hand becomes the previous version.
    if std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
        let adopted = versions.join(format!("adopted-{}", std::process::id()));
        std::fs::rename(&link, &adopted).map_err(|e| io("move", &link, e))?;
        point(
            &link,
            &Path::new(STORE_DIR)
                .join(&name)
                .join(adopted.file_name().expect("named")),
        )?;
    }
    let old = link_target(&link);
    let new_target = Path::new(STORE_DIR).join(&name).join(&leaf);
    let unchanged = old.as_deref() == Some(new_target.as_path());
    let installed = versions.join(&leaf);
    if !unchanged {
        // A leftover of an earlier, interrupted install of the same version goes first.
        if installed.exists() {
            std::fs::remove_dir_all(&installed).map_err(|e| io("remove", &installed, e))?;
        }
        let scratch = staging.path().join("copy");
        copy_bundle(&bundle, &scratch)?;
        Bundle::load(&scratch, &config.trust).map_err(|e| bundle_failure(&e))?;
        std::fs::rename(&scratch, &installed).map_err(|e| io("move into", &installed, e))?;
        point(&link, &new_target)?;
        if let Some(old) = &old {
            let old_leaf = old.file_name().map(PathBuf::from).unwrap_or_default();
            point(&versions.join(PREVIOUS_LINK), &old_leaf)?;
        }
        prune(&versions, &leaf)?;
    }
    let previous = link_target(&versions.join(PREVIOUS_LINK))
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if args.json {
        println!(
            "{}",
            json!({
                "name": name, "version": version, "dir": link, "installed": installed,
                "signed_by": key_id, "root": root, "capabilities": caps,
                "previous": previous, "unchanged": unchanged,
                "warning": bundle.provenance().warning(),
            })
        );
    } else if unchanged {
        println!(
            "{name} {version} is already installed at {}",
            link.display()
        );
    } else {
        println!("installed {name} {version} at {}", link.display());
        if let Some(previous) = previous {
            println!("previous version kept: {previous} (`rlp agent rollback {name}` restores it)");
        }
    }
    Ok(())
}

/// Removes every version directory of one agent but `current` and the previous one.
fn prune(versions: &Path, current: &str) -> Result<(), Failure> {
    let previous = link_target(&versions.join(PREVIOUS_LINK))
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    for entry in std::fs::read_dir(versions)
        .map_err(|e| io("read", versions, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep =
            name == current || name == PREVIOUS_LINK || previous.as_deref() == Some(name.as_str());
        if !keep && entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(entry.path()).map_err(|e| io("remove", &entry.path(), e))?;
        }
    }
    Ok(())
}

pub fn rollback(args: RollbackArgs) -> Result<(), Failure> {
    let json = args.json;
    rollback_inner(args).map_err(|f| f.json(json))
}

fn rollback_inner(args: RollbackArgs) -> Result<(), Failure> {
    runloop_bundle::Name::parse("name", &args.name)
        .map_err(|e| Failure::invalid("InvalidName", e.to_string()))?;
    let config = load_config(&args.kernel)?;
    let agents = agents_dir(&config);
    let versions = agents.join(STORE_DIR).join(&args.name);
    let link = agents.join(&args.name);
    // Without an agents directory there is nothing to roll back (and no lock to take).
    let _lock = match agents.is_dir() {
        true => Some(lock_store(&agents)?),
        false => None,
    };
    let (Some(current), Some(previous)) = (
        link_target(&link),
        link_target(&versions.join(PREVIOUS_LINK)),
    ) else {
        return Err(Failure::invalid(
            "NoPrevious",
            format!(
                "{} has no previous version to roll back to (installed with `rlp agent install`, then upgraded)",
                args.name
            ),
        ));
    };
    let previous_dir = versions.join(&previous);
    // The version restored must still verify (a tampered one is not put back).
    let bundle = Bundle::load(&previous_dir, &config.trust).map_err(|e| bundle_failure(&e))?;
    point(
        &link,
        &Path::new(STORE_DIR).join(&args.name).join(&previous),
    )?;
    let current_leaf = current.file_name().map(PathBuf::from).unwrap_or_default();
    point(&versions.join(PREVIOUS_LINK), &current_leaf)?;
    let version = bundle.manifest().version().to_string();
    if args.json {
        println!(
            "{}",
            json!({"name": args.name, "version": version, "dir": link,
                   "previous": current_leaf})
        );
    } else {
        println!(
            "{} rolled back to {version}; {} kept as the previous version",
            args.name,
            current_leaf.display()
        );
    }
    Ok(())
}
