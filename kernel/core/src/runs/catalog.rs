//! Where an opening's `use: agent:<name>[@<variant>]` finds its bundle: the search path of
//! `shared/specs/openings-v0.md`, first match wins.
//!
//! 1. `<opening's directory>/agents/`
//! 2. the engine's configured search dirs
//! 3. `~/.runloop/agents`
//! 4. `/var/lib/runloop/agents`
//! 5. the bundles shipped with Runloop: `$RUNLOOP_BUNDLES_DIR`, `/usr/share/runloop/agents`,
//!    and, for a build from a checkout, the checkout's `agents/bundles`.
//!
//! In each directory the bundle of `name` is `<name>` (`<name>@<variant>` for a variant).
//! Every candidate found is loaded and verified (`Bundle::load`: signature against the
//! trust roots, digest, policy, ABI): a bundle that fails verification is an error naming
//! it, never skipped for the next one.
//!
//! A catalog lives for one operation (one submit: validation, then the run's spec) and
//! remembers each agent's resolution, so an opening whose nodes share an agent, and the
//! spec after the validation, load and verify each bundle once (`Bundle::load` costs
//! milliseconds: signature, digest, ABI check of the whole module). The run keeps the
//! verified bundles of its nodes and starts each node's agent from them
//! ([`crate::Kernel::start_verified_in`]): a node's start loads and verifies nothing again.
//! Across submits, the engine's catalogs share the kernel's [`BundleCache`]: a bundle whose
//! directory is unchanged (same files, inodes, sizes and times) is not read again, and a
//! bundle changed on disk is loaded and verified again by the next submit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runloop_bundle::cache::BundleCache;
use runloop_bundle::{Bundle, TrustPolicy};
use runloop_openings::{AgentCatalog, AgentFacts, AgentRef, CatalogError};

/// The bundles shipped in this build's checkout (absent in an installed build).
const CHECKOUT_BUNDLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../agents/bundles");

/// The directories searched for an opening read from `opening_dir`, in order.
pub fn search_path(opening_dir: &Path, configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = vec![opening_dir.join("agents")];
    dirs.extend(installed_path(configured));
    dirs
}

/// The search path without an opening's directory (steps 2 to 5).
pub fn installed_path(configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = configured.to_vec();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".runloop/agents"));
    }
    dirs.push(PathBuf::from("/var/lib/runloop/agents"));
    dirs.extend(shipped_dirs());
    dirs
}

/// Where the bundles shipped with Runloop are.
pub fn shipped_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("RUNLOOP_BUNDLES_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from("/usr/share/runloop/agents"));
    let checkout = PathBuf::from(CHECKOUT_BUNDLES);
    dirs.push(std::fs::canonicalize(&checkout).unwrap_or(checkout));
    dirs
}

/// Most agent resolutions one catalog remembers; past it, each further agent is loaded
/// at every use (an opening has far fewer distinct agents).
pub const RESOLVED_AGENTS_MAX: usize = 256;

/// What resolving one agent gave: its bundle directory and the verified bundle (shared: a
/// run hands it to each node's start, which then loads nothing), or why not.
type Resolution = Result<(PathBuf, Arc<Bundle>), CatalogError>;

/// The catalog over one search path; remembers where each agent resolved.
#[derive(Debug)]
pub struct BundleCatalog {
    dirs: Vec<PathBuf>,
    trust: TrustPolicy,
    /// By leaf name (`<name>` or `<name>@<variant>`), at most [`RESOLVED_AGENTS_MAX`].
    resolved: Mutex<HashMap<String, Resolution>>,
    /// Verified bundles shared across catalogs (`None`: every resolution loads).
    cache: Option<Arc<BundleCache>>,
}

impl BundleCatalog {
    /// The catalog over `dirs`, loading bundles under `trust`.
    pub fn new(dirs: Vec<PathBuf>, trust: TrustPolicy) -> Self {
        Self {
            dirs,
            trust,
            resolved: Mutex::new(HashMap::new()),
            cache: None,
        }
    }

    /// The same catalog loading through `cache` (see [`BundleCache`]).
    pub fn with_cache(mut self, cache: Arc<BundleCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The bundle directory of `agent`, loaded and verified (once per catalog).
    pub fn resolve(&self, agent: &AgentRef) -> Result<(PathBuf, Arc<Bundle>), CatalogError> {
        let leaf = match &agent.variant {
            Some(v) => format!("{}@{v}", agent.name),
            None => agent.name.clone(),
        };
        if let Some(known) = self.resolved.lock().expect("resolved lock").get(&leaf) {
            return known.clone();
        }
        let resolution = self.load(&leaf);
        let mut resolved = self.resolved.lock().expect("resolved lock");
        if resolved.len() < RESOLVED_AGENTS_MAX {
            resolved.insert(leaf, resolution.clone());
        }
        resolution
    }

    /// Finds and loads the bundle `leaf` along the search path.
    fn load(&self, leaf: &str) -> Resolution {
        for dir in &self.dirs {
            let candidate = dir.join(leaf);
            if !candidate.join(runloop_bundle::MANIFEST_FILE).is_file() {
                continue;
            }
            let loaded = match &self.cache {
                Some(cache) => cache.load(&candidate, &self.trust),
                None => Bundle::load(&candidate, &self.trust).map(Arc::new),
            };
            return match loaded {
                Ok(bundle) => Ok((candidate, bundle)),
                Err(e) => Err(CatalogError::Invalid(format!(
                    "agent {leaf}: bundle {} fails verification: {e}",
                    candidate.display()
                ))),
            };
        }
        let searched: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        Err(CatalogError::Unknown(format!(
            "{leaf} (searched {})",
            searched.join(", ")
        )))
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every installed bundle: `(name, dir)`, first found per name, in search order.
    pub fn installed(&self) -> Vec<(String, PathBuf, Result<Bundle, String>)> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            for path in names {
                if !path.join(runloop_bundle::MANIFEST_FILE).is_file() {
                    continue;
                }
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if seen.insert(name.to_owned()) {
                    let bundle = Bundle::load(&path, &self.trust).map_err(|e| e.to_string());
                    out.push((name.to_owned(), path.clone(), bundle));
                }
            }
        }
        out
    }
}

/// What the validator needs from a bundle.
pub fn facts(bundle: &Bundle) -> AgentFacts {
    let manifest = bundle.manifest();
    AgentFacts {
        ports_in: manifest
            .ports_in()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        ports_out: manifest
            .ports_out()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        // The send/delete/spend kinds its policy grants: such a node needs
        // `require_human_confirm: true` while the run confirms external effects.
        external_effects: bundle
            .policy()
            .effects()
            .filter(|(kind, _)| kind.class().is_external())
            .map(|(kind, _)| kind.name().to_owned())
            .collect(),
    }
}

impl AgentCatalog for BundleCatalog {
    fn agent(&self, agent: &AgentRef) -> Result<AgentFacts, CatalogError> {
        self.resolve(agent).map(|(_, bundle)| facts(&bundle))
    }
}
