//! `rlp agent keygen|sign|verify` and `rlp trust ls|add|remove`: signing keys, bundle
//! signatures, and the trust roots in the user's config file (docs/trust.md).
//!
//! The loader (`runloop_bundle::Bundle::load`) is the one place signatures are checked;
//! this module only writes keys, signatures and `security.trust_roots`, and reports what
//! the loader decided. `trust add|remove` edit the `security.trust_roots` block of the
//! config file as text (`trust_yaml`), so its comments and layout stay; the result must
//! parse to the intended tree and load as config before it replaces the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use runloop_bundle::sign::{self, PUBLIC_PREFIX};
use runloop_bundle::{Bundle, LoadError, Provenance, PublicKey, Scope, SecretKey, TrustRoot};
use runloop_kernel::config::{self, LoadOptions};
use serde_json::json;
use serde_norway::{Mapping, Value};

use crate::failure::Failure;
use crate::kernel_client::{KernelArgs, load_config};

mod trust_yaml;

/// The secret key file `keygen` writes when no `--out` is given (under the home).
const DEFAULT_KEY_FILE: &str = ".runloop/keys/signing.key";

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The secret key file to write (mode 0600); the public half goes to FILE.pub.
    /// Default: ~/.runloop/keys/signing.key.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
    /// Print {"key_id", "secret", "public", "public_key"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The bundle directory (manifest.toml, policy.caps, agent.wasm).
    #[arg(value_name = "BUNDLE")]
    dir: PathBuf,
    /// The secret key file (`runloop-ed25519-secret:<hex>`, from `rlp agent keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Print {"bundle", "key_id"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle directory.
    #[arg(value_name = "BUNDLE")]
    dir: PathBuf,
    /// Print {"name", "version", "blake3", "signed_by", "root", "capabilities", "warning"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// The keys trusted to sign agent bundles: the built-in project key and
    /// security.trust_roots, each with its id, name and scopes.
    Ls(TrustLsArgs),
    /// Trust a public key (a `.pub` file from `rlp agent keygen`, or the
    /// `runloop-ed25519:<hex>` text) to sign the agents its scopes match. Writes
    /// security.trust_roots in the config file; adding a key again replaces its name and
    /// scopes.
    Add(TrustAddArgs),
    /// Stop trusting a key, by its id (see `rlp trust ls`). The built-in project key
    /// cannot be removed.
    Remove(TrustRemoveArgs),
}

#[derive(Debug, Args)]
pub struct TrustLsArgs {
    /// Print {"allow_unsigned_agents", "roots": [{key_id, name, scopes, builtin, key}]}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct TrustAddArgs {
    /// A public key file, or the key itself (`runloop-ed25519:<64 hex>`).
    #[arg(value_name = "KEY")]
    key: String,
    /// A name to show for the key.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// An agent-name glob the key may sign (`mail*`, `echo`, `*`); repeat for more.
    /// Default: every agent.
    #[arg(long = "scope", value_name = "GLOB")]
    scopes: Vec<String>,
    /// Print the root added.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct TrustRemoveArgs {
    /// The key id (16 hex digits, from `rlp trust ls`).
    #[arg(value_name = "KEY_ID")]
    key_id: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

/// The failure for a bundle that did not load: its specific name (`Unsigned`,
/// `Untrusted`, `OutOfScope`, `BadSignature`, `DigestMismatch`, …), exit 2.
pub fn bundle_failure(error: &LoadError) -> Failure {
    let name = match error.name() {
        "Io" => "BadBundle",
        name => name,
    };
    Failure::invalid(name, error.to_string())
}

/// Who vouches for `bundle`, for people: the root's name and key id, or "nobody".
pub fn signer(bundle: &Bundle) -> (Option<String>, Option<String>) {
    match bundle.provenance() {
        Provenance::Trusted { key_id, root } => (Some(key_id.to_string()), Some(root.clone())),
        Provenance::Verified { key_id } => (Some(key_id.to_string()), None),
        Provenance::Allowed { .. } | Provenance::Unsigned => (None, None),
    }
}

/// Signs the bundle in `dir` with the secret key file `key`; returns the key id.
pub fn sign_dir(dir: &Path, key: &Path) -> Result<String, Failure> {
    let secret = SecretKey::read(key).map_err(|e| match e {
        sign::KeyError::Read { .. } => Failure::invalid("NoKey", e.to_string()),
        other => Failure::invalid("BadKey", other.to_string()),
    })?;
    sign::sign(dir, &secret)
        .map(|id| id.to_string())
        .map_err(|e| match e {
            sign::SignError::Load(load) => bundle_failure(&load),
            write @ sign::SignError::Write { .. } => Failure::io(write.to_string()),
        })
}

/// Writes `text` to a new file `path` with `mode` (refusing to replace one unless `force`).
fn write_new(path: &Path, text: &str, mode: u32, force: bool) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::io(format!("create {}: {e}", parent.display())))?;
    }
    if force {
        let _ = std::fs::remove_file(path);
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Failure::invalid(
                "KeyExists",
                format!("{} exists; pass --force to replace it", path.display()),
            ),
            _ => Failure::io(format!("create {}: {e}", path.display())),
        })?;
    file.write_all(text.as_bytes())
        .map_err(|e| Failure::io(format!("write {}: {e}", path.display())))
}

impl KeygenArgs {
    pub fn json_flag(&self) -> bool {
        self.json
    }
}

pub fn keygen(args: KeygenArgs) -> Result<(), Failure> {
    let out = match args.out {
        Some(out) => out,
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(DEFAULT_KEY_FILE))
            .ok_or_else(|| Failure::invalid("NoHome", "$HOME is not set; pass --out FILE"))?,
    };
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    // The seed comes from the operating system's RNG (getrandom), the one the sandbox's
    // `random.bytes` uses; the signing key zeroes its copy when dropped.
    let secret = {
        let mut seed = [0u8; 32];
        runloop_sandbox::RandomSource::fill(&mut runloop_sandbox::OsRandom, &mut seed);
        SecretKey::from_seed(seed)
    };
    let public = secret.public();
    let id = public.id();
    if !args.force && public_path.exists() {
        return Err(Failure::invalid(
            "KeyExists",
            format!(
                "{} exists; pass --force to replace it",
                public_path.display()
            ),
        ));
    }
    write_new(
        &out,
        &format!(
            "# Runloop bundle-signing key {id} (secret: keep it private)\n{}\n",
            secret.to_text()
        ),
        0o600,
        args.force,
    )?;
    write_new(
        &public_path,
        &format!(
            "# Runloop bundle-signing key {id} (public: `rlp trust add` it)\n{}\n",
            public.to_text()
        ),
        0o644,
        args.force,
    )?;
    if args.json {
        println!(
            "{}",
            json!({"key_id": id.to_string(), "secret": out, "public": public_path,
                   "public_key": public.to_text()})
        );
    } else {
        println!("key {id}");
        println!("secret: {} (mode 0600; keep it private)", out.display());
        println!("public: {}", public_path.display());
        println!(
            "sign with `rlp agent sign <bundle> --key {}`; trust with `rlp trust add {}`",
            out.display(),
            public_path.display()
        );
    }
    Ok(())
}

pub fn sign(args: SignArgs) -> Result<(), Failure> {
    let id = sign_dir(&args.dir, &args.key).map_err(|f| f.json(args.json))?;
    if args.json {
        println!("{}", json!({"bundle": args.dir, "key_id": id}));
    } else {
        println!("{}: signed by key {id}", args.dir.display());
    }
    Ok(())
}

/// The policy lines a person reads before trusting a bundle (`policy.caps` without
/// comments and the header).
pub fn capability_lines(bundle: &Bundle) -> Vec<String> {
    let path = bundle.dir().join(bundle.manifest().caps_file().as_str());
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("runloop-caps"))
        .map(str::to_owned)
        .collect()
}

pub fn verify(args: VerifyArgs) -> Result<(), Failure> {
    let json = args.json;
    let trust = load_config(&args.kernel).map_err(|f| f.json(json))?.trust;
    let bundle = Bundle::load(&args.dir, &trust).map_err(|e| bundle_failure(&e).json(json))?;
    let manifest = bundle.manifest();
    let (key_id, root) = signer(&bundle);
    let caps = capability_lines(&bundle);
    if json {
        println!(
            "{}",
            json!({
                "name": manifest.name().as_str(),
                "version": manifest.version().to_string(),
                "blake3": manifest.wasm_blake3().to_hex(),
                "signed_by": key_id,
                "root": root,
                "capabilities": caps,
                "warning": bundle.provenance().warning(),
            })
        );
    } else {
        println!(
            "{} {}: ok, signed by {}",
            manifest.name(),
            manifest.version(),
            match (&root, &key_id) {
                (Some(root), Some(id)) => format!("{root} ({id})"),
                _ => "nobody (allowed by security.allow_unsigned_agents)".into(),
            }
        );
        println!("blake3 {}", manifest.wasm_blake3());
        for line in caps {
            println!("  {line}");
        }
    }
    Ok(())
}

pub fn run(command: TrustCommand) -> Result<(), Failure> {
    match command {
        TrustCommand::Ls(args) => {
            let json = args.json;
            ls(args).map_err(|f| f.json(json))
        }
        TrustCommand::Add(args) => {
            let json = args.json;
            add(args).map_err(|f| f.json(json))
        }
        TrustCommand::Remove(args) => {
            let json = args.json;
            remove(args).map_err(|f| f.json(json))
        }
    }
}

fn root_json(root: &TrustRoot) -> serde_json::Value {
    let scopes: Vec<&str> = root.scopes().iter().map(Scope::as_str).collect();
    json!({
        "key_id": root.id().to_string(),
        "name": root.name(),
        "scopes": scopes,
        "builtin": root.is_builtin(),
        "key": root.key().to_text(),
    })
}

fn ls(args: TrustLsArgs) -> Result<(), Failure> {
    let trust = load_config(&args.kernel)?.trust;
    if args.json {
        let roots: Vec<_> = trust.roots().iter().map(root_json).collect();
        println!(
            "{}",
            json!({"allow_unsigned_agents": trust.allows_unsigned(), "roots": roots})
        );
        return Ok(());
    }
    println!("{:<18} {:<20} {:<24} SOURCE", "KEY ID", "NAME", "SCOPES");
    for root in trust.roots() {
        let scopes: Vec<&str> = root.scopes().iter().map(Scope::as_str).collect();
        println!(
            "{:<18} {:<20} {:<24} {}",
            root.id().to_string(),
            root.name().unwrap_or("-"),
            scopes.join(","),
            if root.is_builtin() {
                "built in"
            } else {
                "security.trust_roots"
            }
        );
    }
    if trust.allows_unsigned() {
        println!(
            "security.allow_unsigned_agents: true (unsigned and untrusted bundles load, with a warning)"
        );
    }
    Ok(())
}

/// The config file `trust add|remove` edit: `--config`, else the mode's.
fn config_path(args: &KernelArgs) -> Result<PathBuf, Failure> {
    if let Some(file) = &args.config {
        return Ok(file.clone());
    }
    let mode = if args.system {
        config::Mode::System
    } else {
        config::Mode::user_from_env().map_err(|e| Failure::invalid("Config", e.to_string()))?
    };
    Ok(mode.config_file())
}

/// Reads the config file: its text (`None` when missing) and its YAML tree (a missing file
/// is an empty map).
fn read_tree(path: &Path) -> Result<(Option<String>, Value), Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let tree = parse_tree(&text).map_err(|e| {
                Failure::invalid("Config", format!("parse {}: {e}", path.display()))
            })?;
            Ok((Some(text), tree))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((None, Value::Mapping(Mapping::new())))
        }
        Err(e) => Err(Failure::io(format!("read {}: {e}", path.display()))),
    }
}

/// A config file's text as a YAML tree (an empty file is an empty map).
fn parse_tree(text: &str) -> Result<Value, serde_norway::Error> {
    Ok(match serde_norway::from_str(text)? {
        Value::Null => Value::Mapping(Mapping::new()),
        other => other,
    })
}

/// `security.trust_roots` of `tree`, created when missing.
fn roots_mut<'a>(tree: &'a mut Value, path: &Path) -> Result<&'a mut Vec<Value>, Failure> {
    let shape = || {
        Failure::invalid(
            "Config",
            format!("{}: security.trust_roots must be a list", path.display()),
        )
    };
    let top = tree.as_mapping_mut().ok_or_else(shape)?;
    let security = top
        .entry(Value::from("security"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if security.is_null() {
        *security = Value::Mapping(Mapping::new());
    }
    let roots = security
        .as_mapping_mut()
        .ok_or_else(shape)?
        .entry(Value::from("trust_roots"))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if roots.is_null() {
        *roots = Value::Sequence(Vec::new());
    }
    roots.as_sequence_mut().ok_or_else(shape)
}

/// The key id of one `trust_roots` entry, if its key parses.
fn entry_id(entry: &Value) -> Option<String> {
    let key = entry.get("key")?.as_str()?;
    PublicKey::parse(key, "key")
        .ok()
        .map(|k| k.id().to_string())
}

/// One change to `security.trust_roots`: keep the old entries `keep` marks, then append
/// `append`.
#[derive(Debug)]
struct RootsEdit {
    old: Vec<Value>,
    keep: Vec<bool>,
    append: Option<Value>,
}

impl RootsEdit {
    /// Drops every entry whose key id is `id`, then appends `append`.
    fn new(old: Vec<Value>, id: &str, append: Option<Value>) -> Self {
        let keep = old
            .iter()
            .map(|entry| entry_id(entry).as_deref() != Some(id))
            .collect();
        Self { old, keep, append }
    }

    fn removes_any(&self) -> bool {
        self.keep.contains(&false)
    }

    /// The entries after the edit.
    fn roots(&self) -> Vec<Value> {
        let kept = self.old.iter().zip(&self.keep).filter(|(_, keep)| **keep);
        kept.map(|(entry, _)| entry.clone())
            .chain(self.append.clone())
            .collect()
    }
}

/// The config file's new text after `edit`: the old text with only the
/// `security.trust_roots` block changed (`trust_yaml::splice`), when that text parses to
/// exactly `expected` (the old tree with the edit made); else, for a layout the splice
/// does not know, the whole tree written anew, which keeps the keys but not the comments.
fn edited_text(
    path: &Path,
    old: Option<&str>,
    edit: &RootsEdit,
    expected: &Value,
) -> Result<String, Failure> {
    let spliced = trust_yaml::splice(old.unwrap_or(""), edit)
        .filter(|text| parse_tree(text).is_ok_and(|tree| &tree == expected));
    if let Some(text) = spliced {
        return Ok(text);
    }
    if old.is_some() {
        eprintln!(
            "note: {}: security is not laid out as block YAML `rlp trust` edits in place; \
             the file is written anew, without its comments",
            path.display()
        );
    }
    serde_norway::to_string(expected)
        .map_err(|e| Failure::io(format!("serialise {}: {e}", path.display())))
}

/// Replaces the config file `path` with `text` atomically, once the config loader accepts
/// it: the text goes to a temporary file beside it (with the old file's permissions),
/// which is loaded as config and only then renamed over `path`. A symlinked config file is
/// edited where it points.
fn write_checked(path: &Path, text: &str, args: &KernelArgs) -> Result<(), Failure> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let path = match is_link {
        true => std::fs::canonicalize(path)
            .map_err(|e| Failure::io(format!("resolve {}: {e}", path.display())))?,
        false => path.to_owned(),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::io(format!("create {}: {e}", parent.display())))?;
    }
    let file_name = path.file_name().map_or_else(
        || "config.yaml".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = path.with_file_name(format!(".{file_name}.rlp-{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, text).and_then(|()| match std::fs::metadata(&path) {
        Ok(meta) => std::fs::set_permissions(&tmp, meta.permissions()),
        Err(_) => Ok(()),
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::io(format!("write {}: {e}", tmp.display())));
    }
    let mode = if args.system {
        Ok(config::Mode::System)
    } else {
        config::Mode::user_from_env()
    };
    let loaded = mode.and_then(|mode| {
        config::load(&LoadOptions {
            mode,
            file: Some(tmp.clone()),
            env: Vec::new(),
            flags: Vec::new(),
        })
    });
    if let Err(e) = loaded {
        let _ = std::fs::remove_file(&tmp);
        let message = e
            .to_string()
            .replace(&tmp.display().to_string(), &path.display().to_string());
        return Err(Failure::invalid("Config", message));
    }
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::io(format!("write {}: {e}", path.display()))
    })
}

fn add(args: TrustAddArgs) -> Result<(), Failure> {
    let key = if args.key.trim_start().starts_with(PUBLIC_PREFIX) {
        PublicKey::parse(&args.key, "KEY")
    } else {
        PublicKey::read(Path::new(&args.key))
    }
    .map_err(|e| Failure::invalid("BadKey", e.to_string()))?;
    let scopes = args
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::invalid("BadScope", e.to_string()))?;
    let root = TrustRoot::new(key.clone(), args.name.clone(), scopes)
        .map_err(|e| Failure::invalid("BadScope", e.to_string()))?;
    let path = config_path(&args.kernel)?;
    let (old, mut tree) = read_tree(&path)?;
    let roots = roots_mut(&mut tree, &path)?;
    let id = key.id().to_string();
    let mut entry = Mapping::new();
    entry.insert(Value::from("key"), Value::from(key.to_text()));
    if let Some(name) = &args.name {
        entry.insert(Value::from("name"), Value::from(name.clone()));
    }
    if !args.scopes.is_empty() {
        let scopes = root
            .scopes()
            .iter()
            .map(|s| Value::from(s.as_str()))
            .collect();
        entry.insert(Value::from("scopes"), Value::Sequence(scopes));
    }
    let edit = RootsEdit::new(roots.clone(), &id, Some(Value::Mapping(entry)));
    *roots = edit.roots();
    let text = edited_text(&path, old.as_deref(), &edit, &tree)?;
    write_checked(&path, &text, &args.kernel)?;
    if args.json {
        let mut value = root_json(&root);
        value["config"] = json!(path);
        println!("{value}");
    } else {
        let scopes: Vec<&str> = root.scopes().iter().map(Scope::as_str).collect();
        println!(
            "trusting key {id}{} to sign agents {} (written to {})",
            args.name.map(|n| format!(" ({n})")).unwrap_or_default(),
            scopes.join(", "),
            path.display()
        );
    }
    Ok(())
}

fn remove(args: TrustRemoveArgs) -> Result<(), Failure> {
    if runloop_bundle::trust::project_key().id().as_str() == args.key_id {
        return Err(Failure::invalid(
            "BuiltIn",
            format!(
                "{} is the built-in project key (it signs the bundles Runloop ships); it cannot be removed",
                args.key_id
            ),
        ));
    }
    let path = config_path(&args.kernel)?;
    let (old, mut tree) = read_tree(&path)?;
    let roots = roots_mut(&mut tree, &path)?;
    let edit = RootsEdit::new(roots.clone(), &args.key_id, None);
    if !edit.removes_any() {
        return Err(Failure::invalid(
            "NoSuchKey",
            format!(
                "no trust root {} in {} (see `rlp trust ls`)",
                args.key_id,
                path.display()
            ),
        ));
    }
    *roots = edit.roots();
    let text = edited_text(&path, old.as_deref(), &edit, &tree)?;
    write_checked(&path, &text, &args.kernel)?;
    if args.json {
        println!("{}", json!({"removed": args.key_id, "config": path}));
    } else {
        println!("removed trust root {} from {}", args.key_id, path.display());
    }
    Ok(())
}
