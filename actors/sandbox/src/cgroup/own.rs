//! Where a process's agent groups go: its own cgroup (`/proc/self/cgroup`, [`OwnCgroup`])
//! when it may use it, else the hierarchy's root ([`AgentBase`]); see the parent module.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::*;

/// Where `/proc/self/cgroup` is.
const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";
/// Most bytes of `/proc/self/cgroup` read (a line per hierarchy: a few hundred in practice).
const PROC_CGROUP_BYTES_MAX: u64 = 64 * 1024;
/// Most lines (hierarchies) of `/proc/self/cgroup` accepted.
const PROC_CGROUP_LINES_MAX: usize = 64;
/// Most characters of a malformed line quoted in its error.
const PROC_CGROUP_QUOTE_CHARS_MAX: usize = 200;
/// The v2 leaf a process moves itself into before its own group gets agent groups.
pub const SUPERVISOR_LEAF: &str = "supervisor";
/// The controllers a v2 own group enables for its children, as `cgroup.subtree_control` takes them.
const V2_SUBTREE_CONTROL: &str = "+memory +cpu +pids";

/// Why `/proc/self/cgroup` could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum OwnCgroupError {
    #[error("read /proc/self/cgroup: {0}")]
    Read(#[source] std::io::Error),
    #[error(
        "/proc/self/cgroup is longer than {PROC_CGROUP_BYTES_MAX} bytes or {PROC_CGROUP_LINES_MAX} lines"
    )]
    TooLong,
    #[error("/proc/self/cgroup names no hierarchy")]
    Empty,
    #[error("/proc/self/cgroup line {line}: {problem}: {text:?}")]
    Malformed {
        /// 1-based.
        line: usize,
        problem: LineProblem,
        text: String,
    },
}

/// What is wrong with one line of `/proc/self/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("want <hierarchy-id>:<controllers>:<path>")]
    Fields,
    #[error("hierarchy id is not a number")]
    HierarchyId,
    #[error("the v2 line (hierarchy 0) lists controllers")]
    UnifiedWithControllers,
    #[error("a v1 line lists no controller")]
    NoController,
    #[error("path is not absolute")]
    RelativePath,
    #[error("path has an empty, . or .. component (a group outside this cgroup namespace)")]
    BadComponent,
    #[error("hierarchy or controller listed twice")]
    Duplicate,
}

/// This process's own cgroups, as `/proc/self/cgroup` lists them: the v2 group (the
/// `0::/path` line) and one group per v1 hierarchy (`4:memory:/path`, `3:cpu,cpuacct:/path`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnCgroup {
    unified: Option<String>,
    v1: Vec<(Vec<String>, String)>,
}

impl OwnCgroup {
    /// Reads and parses `/proc/self/cgroup`.
    pub fn read() -> Result<Self, OwnCgroupError> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(PROC_SELF_CGROUP)
            .and_then(|f| f.take(PROC_CGROUP_BYTES_MAX + 1).read_to_string(&mut text))
            .map_err(OwnCgroupError::Read)?;
        if text.len() as u64 > PROC_CGROUP_BYTES_MAX {
            return Err(OwnCgroupError::TooLong);
        }
        Self::parse(&text)
    }

    /// Parses the text of a `/proc/<pid>/cgroup` file; every line must be well formed.
    pub fn parse(text: &str) -> Result<Self, OwnCgroupError> {
        let mut own = Self::default();
        for (index, line) in text.lines().enumerate() {
            if index >= PROC_CGROUP_LINES_MAX {
                return Err(OwnCgroupError::TooLong);
            }
            own.parse_line(line)
                .map_err(|problem| OwnCgroupError::Malformed {
                    line: index + 1,
                    problem,
                    text: line.chars().take(PROC_CGROUP_QUOTE_CHARS_MAX).collect(),
                })?;
        }
        if own.unified.is_none() && own.v1.is_empty() {
            return Err(OwnCgroupError::Empty);
        }
        Ok(own)
    }

    fn parse_line(&mut self, line: &str) -> Result<(), LineProblem> {
        // The path is the rest of the line: it may itself hold ':'.
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(LineProblem::Fields);
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LineProblem::HierarchyId);
        }
        check_own_path(path)?;
        if id.bytes().all(|b| b == b'0') {
            if !controllers.is_empty() {
                return Err(LineProblem::UnifiedWithControllers);
            }
            if self.unified.replace(path.to_owned()).is_some() {
                return Err(LineProblem::Duplicate);
            }
            return Ok(());
        }
        if controllers.is_empty() {
            return Err(LineProblem::NoController);
        }
        let names: Vec<String> = controllers.split(',').map(str::to_owned).collect();
        for name in &names {
            if name.is_empty() {
                return Err(LineProblem::Fields);
            }
            if self.v1(name).is_some() {
                return Err(LineProblem::Duplicate);
            }
        }
        self.v1.push((names, path.to_owned()));
        Ok(())
    }

    /// The v2 group (absolute, `/` for the root), if the unified hierarchy is listed.
    pub fn unified(&self) -> Option<&str> {
        self.unified.as_deref()
    }

    /// The v1 group of one controller (`memory`, `cpu`, …), if its hierarchy is listed.
    pub fn v1(&self, controller: &str) -> Option<&str> {
        self.v1
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == controller))
            .map(|(_, path)| path.as_str())
    }

    /// The one group this process is in for every hierarchy agents use (`/` = the root).
    fn agents_group(&self, v2: bool) -> Result<&str, String> {
        if v2 {
            return self
                .unified()
                .ok_or_else(|| "/proc/self/cgroup has no v2 (0::) line".to_owned());
        }
        let mut found: Option<(String, &str)> = None;
        for controller in controllers(false) {
            let path = self
                .v1(&controller)
                .ok_or_else(|| format!("/proc/self/cgroup lists no {controller} hierarchy"))?;
            match &found {
                Some((first, other)) if *other != path => {
                    return Err(format!(
                        "in different groups per controller ({first}:{other}, {controller}:{path})"
                    ));
                }
                Some(_) => {}
                None => found = Some((controller, path)),
            }
        }
        Ok(found.expect("controllers(false) is not empty").1)
    }
}

/// An absolute cgroup path: `/`, or `/`-separated non-empty components other than `.`
/// and `..` (`..` is how a group outside this process's cgroup namespace shows).
fn check_own_path(path: &str) -> Result<(), LineProblem> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(LineProblem::RelativePath);
    };
    if rest.is_empty() {
        return Ok(());
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(LineProblem::BadComponent);
    }
    Ok(())
}

/// Where one process puts its agents' groups: a path relative to the root of every
/// hierarchy agents use, `""` for the root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBase {
    path: String,
    pub(super) v2: bool,
}

/// The own v2 group this process has moved itself out of (into its supervisor leaf).
static PREPARED_V2: Mutex<Option<String>> = Mutex::new(None);

impl AgentBase {
    /// This process's base, chosen once ([`AgentBase::choose`] on `/proc/self/cgroup`);
    /// the error is why no cgroup can be made, for one notice.
    pub fn current() -> Result<&'static AgentBase, &'static str> {
        static BASE: OnceLock<Result<AgentBase, String>> = OnceLock::new();
        BASE.get_or_init(|| {
            let v2 = hierarchies::is_cgroup2_unified_mode();
            Self::choose(OwnCgroup::read().as_ref(), v2)
        })
        .as_ref()
        .map_err(String::as_str)
    }

    /// Where a process in `own` puts agent groups: its own group when that is not the
    /// root, is the same group in every hierarchy agents use (v1) and is writable — for
    /// v2 also: delegated (`cgroup.procs` and `cgroup.subtree_control` writable), offering
    /// memory, cpu and pids, with no process but this one in it; otherwise the root of
    /// the hierarchies, if writable. Reads the cgroup tree, changes nothing.
    pub fn choose(own: Result<&OwnCgroup, &OwnCgroupError>, v2: bool) -> Result<Self, String> {
        let own_reason = match own.map_err(ToString::to_string).and_then(|own| {
            let group = own.agents_group(v2)?;
            if group == "/" {
                return Ok(None);
            }
            let rel = group.trim_start_matches('/');
            usable_own(rel, v2).map_err(|why| format!("{group}: {why}"))?;
            Ok(Some(rel.to_owned()))
        }) {
            Ok(Some(path)) => return Ok(Self { path, v2 }),
            Ok(None) => None,
            Err(reason) => Some(reason),
        };
        match root_writable(v2) {
            Ok(()) => Ok(Self {
                path: String::new(),
                v2,
            }),
            Err(root) => Err(match own_reason {
                Some(own) => format!("cgroups unusable (own group: {own}; root: {root})"),
                None => format!("cgroups unusable ({root})"),
            }),
        }
    }

    /// The base relative to each hierarchy's root (`""` = the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the groups are v2 ones.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// `<base>/<rel>`, or `rel` at the root.
    pub(super) fn join(&self, rel: &str) -> String {
        if self.path.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.path)
        }
    }

    /// v2 below the root: moves this process into `<base>/supervisor` and enables the
    /// agents' controllers for `<base>`'s children, once per process (again after a
    /// failure: every step may be repeated).
    pub(super) fn prepare(&self) -> Result<(), CgroupError> {
        if !self.v2 || self.path.is_empty() {
            return Ok(());
        }
        let mut prepared = PREPARED_V2.lock().unwrap_or_else(|e| e.into_inner());
        if prepared.as_deref() == Some(self.path.as_str()) {
            return Ok(());
        }
        let own = PathBuf::from(CGROUP_ROOT).join(&self.path);
        let fail = |step, source| CgroupError::Prepare {
            path: own.clone(),
            step,
            source,
        };
        let leaf = own.join(SUPERVISOR_LEAF);
        match std::fs::create_dir(&leaf) {
            Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(fail("create the supervisor leaf", err));
            }
            _ => {}
        }
        // "0" moves the writer's whole process (every thread) into the leaf.
        std::fs::write(leaf.join("cgroup.procs"), "0")
            .map_err(|err| fail("move this process into the supervisor leaf", err))?;
        std::fs::write(own.join("cgroup.subtree_control"), V2_SUBTREE_CONTROL)
            .map_err(|err| fail("enable +memory +cpu +pids for its children", err))?;
        *prepared = Some(self.path.clone());
        Ok(())
    }
}

/// Why `rel` (this process's own group) cannot hold agent groups, if it cannot.
fn usable_own(rel: &str, v2: bool) -> Result<(), String> {
    use nix::unistd::{AccessFlags, access};
    let writable = |path: &Path| {
        access(path, AccessFlags::W_OK).map_err(|e| format!("{} not writable: {e}", path.display()))
    };
    let root = Path::new(CGROUP_ROOT);
    if !v2 {
        for controller in controllers(false) {
            writable(&root.join(controller).join(rel))?;
        }
        return Ok(());
    }
    let own = root.join(rel);
    for path in [
        own.clone(),
        own.join("cgroup.procs"),
        own.join("cgroup.subtree_control"),
    ] {
        writable(&path)?;
    }
    let read = |name: &str| {
        std::fs::read_to_string(own.join(name)).map_err(|e| format!("read {name}: {e}"))
    };
    let offered = read("cgroup.controllers")?;
    for controller in controllers(true) {
        if !offered.split_whitespace().any(|c| c == controller) {
            return Err(format!("controller {controller} not delegated to it"));
        }
    }
    // Only this process may be in it: it moves itself out, and then the group may
    // enable controllers for its children.
    let me = std::process::id().to_string();
    if let Some(other) = read("cgroup.procs")?.lines().find(|p| p.trim() != me) {
        return Err(format!("process {other} shares it"));
    }
    Ok(())
}
