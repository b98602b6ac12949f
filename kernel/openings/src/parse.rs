//! YAML → [`Opening`]: every rule of the spec, each error with `line:col` and its rule.
//!
//! The YAML is read into a positioned tree first ([`crate::yaml`]); a syntax error there
//! stops validation (nothing after it has a reliable shape). Past that point every check
//! runs and every error is kept, then reported in source order. Here: the document's
//! top level, `params`, `policy` and `goals`; [`nodes`] checks nodes and their agents,
//! [`graph`] edges, guards, cycles and `success`.

mod graph;
mod nodes;

use crate::model::{
    AgentFacts, AgentRef, MAX_PARALLEL_MAX, NAME_BYTES_MAX, NodeId, Opening, ParamDecl, Policy,
    SOURCE_BYTES_MAX, TIMEOUT_MS_MAX,
};
use crate::params;
use crate::template::{self, Template};
use crate::yaml::{self, Entry, Node, Pos, Value};

/// Every validation rule, closed (for tests and `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Not YAML, or not a mapping at the top.
    Syntax,
    UnknownKey,
    MissingKey,
    WrongType,
    Version,
    Name,
    Param,
    Policy,
    NodeId,
    DuplicateNode,
    Use,
    UnknownAgent,
    Retry,
    Budget,
    Confirm,
    Edge,
    UnknownNode,
    UnknownPort,
    Guard,
    Cycle,
    Template,
    Success,
    Limit,
}

/// One validation error: where and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct ValidationError {
    /// 1-based.
    pub line: u32,
    /// 1-based.
    pub col: u32,
    pub rule: Rule,
    pub message: String,
}

/// Every error found in one file (non-empty), in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl std::fmt::Display for ValidationErrors {
    /// One error per line, `line:col: message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Why an agent cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown agent {0}")]
    Unknown(String),
    /// Found but its bundle fails verification; the message names the bundle and why.
    #[error("{0}")]
    Invalid(String),
}

/// The installed agents, as the kernel's bundle search path finds them.
pub trait AgentCatalog {
    fn agent(&self, agent: &AgentRef) -> Result<AgentFacts, CatalogError>;
}

/// Keys an opening may have at the top.
const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "goals",
    "params",
    "policy",
    "nodes",
    "edges",
    "success",
];
/// Keys of one `params:` entry.
const PARAM_KEYS: &[&str] = &["type", "required", "default", "description"];
/// Keys of `policy:`.
const POLICY_KEYS: &[&str] = &[
    "timeout_ms",
    "node_timeout_ms",
    "budget_tokens",
    "budget_usd_micros",
    "max_parallel",
    "confirm_external",
];

/// Parses and validates one opening's source.
pub fn validate(source: &str, catalog: &dyn AgentCatalog) -> Result<Opening, ValidationErrors> {
    let start = Pos { line: 1, col: 1 };
    if source.len() > SOURCE_BYTES_MAX {
        let message = format!(
            "opening is {} bytes; at most {SOURCE_BYTES_MAX} are allowed",
            source.len()
        );
        return Err(ValidationErrors(vec![error(start, Rule::Limit, message)]));
    }
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            let message = "empty document; expected a mapping";
            return Err(ValidationErrors(vec![error(start, Rule::Syntax, message)]));
        }
        Err(e) => {
            return Err(ValidationErrors(vec![error(
                e.pos,
                Rule::Syntax,
                e.message,
            )]));
        }
    };
    let Some(top) = root.as_map() else {
        let message = format!("expected a mapping at the top, got {}", root.kind());
        return Err(ValidationErrors(vec![error(
            root.pos,
            Rule::Syntax,
            message,
        )]));
    };
    let mut ck = Ck::default();
    let opening = document(&mut ck, &root, top, catalog, source);
    if ck.errors.is_empty() {
        Ok(opening)
    } else {
        // Stable: errors at one position keep the order they were found in.
        ck.errors.sort_by_key(|e| (e.line, e.col));
        Err(ValidationErrors(ck.errors))
    }
}

fn document(
    ck: &mut Ck,
    root: &Node,
    top: &[Entry],
    catalog: &dyn AgentCatalog,
    source: &str,
) -> Opening {
    ck.known_keys(top, TOP_KEYS, "opening");
    version(ck, root, top);
    let name = name(ck, root, top);
    let description = yaml::get(top, "description")
        .and_then(|e| ck.string(&e.value, "description"))
        .map(str::to_owned);
    let params = yaml::get(top, "params").map_or_else(Vec::new, |e| param_decls(ck, &e.value));
    let policy = yaml::get(top, "policy").map_or_else(Policy::default, |e| policy(ck, &e.value));
    let goals = yaml::get(top, "goals").map_or_else(Vec::new, |e| goals(ck, &e.value, &params));
    let nodes = nodes::nodes(ck, root, top, &params, &policy, catalog);
    let edges = graph::edges(ck, top, &nodes);
    let success = yaml::get(top, "success").and_then(|e| graph::success(ck, &e.value, &nodes));
    Opening {
        name,
        description,
        goals,
        params,
        policy,
        nodes: nodes.into_iter().map(|n| n.node).collect(),
        edges,
        success,
        digest: *blake3::hash(source.as_bytes()).as_bytes(),
    }
}

fn version(ck: &mut Ck, root: &Node, top: &[Entry]) {
    let Some(entry) = ck.required(root, top, "version", "opening") else {
        return;
    };
    let v = &entry.value;
    if !matches!(&v.value, Value::Int(i) if i.as_u64() == Some(0)) {
        let message = format!("unsupported opening version {}; expected 0", shown(v));
        ck.err(v.pos, Rule::Version, message);
    }
}

fn name(ck: &mut Ck, root: &Node, top: &[Entry]) -> String {
    let entry = ck.required(root, top, "name", "opening");
    let Some(value) = entry.map(|e| &e.value) else {
        return String::new();
    };
    let Some(name) = ck.string(value, "name") else {
        return String::new();
    };
    ck.name_grammar(value.pos, name, "name", Rule::Name);
    name.to_owned()
}

fn param_decls(ck: &mut Ck, node: &Node) -> Vec<ParamDecl> {
    let Some(entries) = ck.map(node, "params") else {
        return Vec::new();
    };
    let mut decls = Vec::new();
    for entry in entries {
        let what = format!("param {}", entry.key);
        ck.name_grammar(entry.key_pos, &entry.key, &what, Rule::Param);
        if let Some(decl) = param_decl(ck, entry, &what) {
            decls.push(decl);
        }
    }
    decls
}

fn param_decl(ck: &mut Ck, entry: &Entry, what: &str) -> Option<ParamDecl> {
    let body = ck.map(&entry.value, what)?;
    ck.known_keys(body, PARAM_KEYS, what);
    let ty_node = &ck.required(&entry.value, body, "type", what)?.value;
    let ty_name = ck.string(ty_node, &format!("{what}: type"))?;
    let Some(ty) = params::parse_type(ty_name) else {
        let message = format!(
            "{what}: unknown type {ty_name}; expected string, integer, number, boolean, \
             object or array"
        );
        ck.err(ty_node.pos, Rule::Param, message);
        return None;
    };
    let required = yaml::get(body, "required")
        .and_then(|e| ck.bool(&e.value, &format!("{what}: required")))
        .unwrap_or(false);
    let description = yaml::get(body, "description")
        .and_then(|e| ck.string(&e.value, &format!("{what}: description")))
        .map(str::to_owned);
    let mut default = None;
    if let Some(d) = yaml::get(body, "default") {
        let value = d.value.to_msgpack();
        if !params::has_type(&value, ty) {
            let message = format!(
                "{what}: default is {}; expected {}",
                d.value.kind(),
                params::type_name(ty)
            );
            ck.err(d.value.pos, Rule::Param, message);
        } else if required {
            let message = format!("{what}: a required param cannot have a default");
            ck.err(d.key_pos, Rule::Param, message);
        }
        default = Some(value);
    }
    Some(ParamDecl {
        name: entry.key.clone(),
        ty,
        required,
        default,
        description,
    })
}

fn policy(ck: &mut Ck, node: &Node) -> Policy {
    let mut policy = Policy::default();
    let Some(entries) = ck.map(node, "policy") else {
        return policy;
    };
    ck.known_keys(entries, POLICY_KEYS, "policy");
    for entry in entries {
        let (v, what) = (&entry.value, format!("policy.{}", entry.key));
        match entry.key.as_str() {
            "timeout_ms" => {
                let t = ck.uint_in(v, &what, Rule::Policy, 1, TIMEOUT_MS_MAX);
                policy.timeout_ms = t.unwrap_or(policy.timeout_ms);
            }
            "node_timeout_ms" => {
                let t = ck.uint_in(v, &what, Rule::Policy, 1, TIMEOUT_MS_MAX);
                policy.node_timeout_ms = t.unwrap_or(policy.node_timeout_ms);
            }
            "budget_tokens" => {
                policy.budget_tokens = ck.uint_in(v, &what, Rule::Policy, 0, u64::MAX)
            }
            "budget_usd_micros" => {
                policy.budget_usd_micros = ck.uint_in(v, &what, Rule::Policy, 0, u64::MAX);
            }
            "max_parallel" => {
                let max = u64::from(MAX_PARALLEL_MAX);
                let n = ck.uint_in(v, &what, Rule::Policy, 1, max);
                policy.max_parallel = n
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(policy.max_parallel);
            }
            "confirm_external" => {
                policy.confirm_external = ck.bool(v, &what).unwrap_or(policy.confirm_external);
            }
            _ => {} // reported by known_keys
        }
    }
    policy
}

fn goals(ck: &mut Ck, node: &Node, params: &[ParamDecl]) -> Vec<Template> {
    let Some(items) = ck.seq(node, "goals") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|goal| {
            ck.string(goal, "goals: each goal")?;
            Some(ck.template(goal, params))
        })
        .collect()
}

fn error(pos: Pos, rule: Rule, message: impl Into<String>) -> ValidationError {
    ValidationError {
        line: pos.line,
        col: pos.col,
        rule,
        message: message.into(),
    }
}

/// A value as a message shows it: strings quoted, collections by their kind.
fn shown(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => format!("{s:?}"),
        Value::Seq(_) | Value::Map(_) => format!("a {}", node.kind()),
        _ => node.raw.clone(),
    }
}

/// The validation in progress: the errors found so far, and typed readers of YAML nodes
/// that report a wrong type as they go (each returns `None` after reporting).
#[derive(Debug, Default)]
struct Ck {
    errors: Vec<ValidationError>,
}

impl Ck {
    fn err(&mut self, pos: Pos, rule: Rule, message: impl Into<String>) {
        self.errors.push(error(pos, rule, message));
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        let message = format!("{what}: expected {expected}, got {}", node.kind());
        self.err(node.pos, Rule::WrongType, message);
    }

    /// Reports every key of `entries` that is not in `allowed`.
    fn known_keys(&mut self, entries: &[Entry], allowed: &[&str], what: &str) {
        for entry in entries
            .iter()
            .filter(|e| !allowed.contains(&e.key.as_str()))
        {
            let message = format!("unknown key {} in {what}", entry.key);
            self.err(entry.key_pos, Rule::UnknownKey, message);
        }
    }

    /// The entry for `key`, or a missing-key error at the map.
    fn required<'n>(
        &mut self,
        map: &Node,
        entries: &'n [Entry],
        key: &str,
        what: &str,
    ) -> Option<&'n Entry> {
        let found = yaml::get(entries, key);
        if found.is_none() {
            self.err(
                map.pos,
                Rule::MissingKey,
                format!("{what}: {key} is required"),
            );
        }
        found
    }

    fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Entry]> {
        let map = node.as_map();
        if map.is_none() {
            self.wrong_type(node, what, "a mapping");
        }
        map
    }

    fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, what, "a sequence");
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        let s = node.as_str();
        if s.is_none() {
            self.wrong_type(node, what, "a string");
        }
        s
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, what, "true or false");
                None
            }
        }
    }

    /// An integer in `[lo, hi]`; out of range is an error of `rule`.
    fn uint_in(&mut self, node: &Node, what: &str, rule: Rule, lo: u64, hi: u64) -> Option<u64> {
        let Value::Int(i) = node.value else {
            self.wrong_type(node, what, "an integer");
            return None;
        };
        match i.as_u64().filter(|n| (lo..=hi).contains(n)) {
            Some(n) => Some(n),
            None => {
                let range = if hi == u64::MAX {
                    format!("at least {lo}")
                } else {
                    format!("between {lo} and {hi}")
                };
                self.err(
                    node.pos,
                    rule,
                    format!("{what} must be {range}, got {}", node.raw),
                );
                None
            }
        }
    }

    /// A number (integer or float) in `[lo, hi]`; out of range is an error of `rule`.
    fn number_in(&mut self, node: &Node, what: &str, rule: Rule, lo: f64, hi: f64) -> Option<f64> {
        let n = match node.value {
            Value::Float(f) => f,
            Value::Int(i) => i.as_f64().unwrap_or(f64::NAN),
            _ => {
                self.wrong_type(node, what, "a number");
                return None;
            }
        };
        if (lo..=hi).contains(&n) {
            return Some(n);
        }
        self.err(
            node.pos,
            rule,
            format!("{what} must be between {lo} and {hi}, got {}", node.raw),
        );
        None
    }

    /// Checks the `[a-z][a-z0-9_]{0,63}` grammar: too long is a limit error, anything else
    /// an error of `rule`.
    fn name_grammar(&mut self, pos: Pos, name: &str, what: &str, rule: Rule) -> bool {
        if name.len() > NAME_BYTES_MAX {
            let message = format!("{what}: longer than {NAME_BYTES_MAX} bytes");
            self.err(pos, Rule::Limit, message);
            return false;
        }
        if NodeId::new(name).is_none() {
            let message = format!("{what}: {name:?} must match [a-z][a-z0-9_]{{0,63}}");
            self.err(pos, rule, message);
            return false;
        }
        true
    }

    /// The template of a `goals` or `with` value; templates in error are reported and
    /// kept as literal text.
    fn template(&mut self, node: &Node, params: &[ParamDecl]) -> Template {
        let literal = |node: &Node| Template::Literal(node.to_msgpack());
        match &node.value {
            Value::Str(s) => match template::of_string(s) {
                Ok(t) => {
                    let mut named = Vec::new();
                    template::params_named(&t, &mut named);
                    match named.iter().find(|n| !params.iter().any(|p| &&p.name == n)) {
                        None => t,
                        Some(undeclared) => {
                            let message = format!(
                                "template {{{{params.{undeclared}}}}}: param {undeclared} is not declared"
                            );
                            self.err(node.pos, Rule::Template, message);
                            literal(node)
                        }
                    }
                }
                Err(message) => {
                    self.err(node.pos, Rule::Template, message);
                    literal(node)
                }
            },
            Value::Seq(items) => {
                let items: Vec<Template> = items.iter().map(|i| self.template(i, params)).collect();
                if items.iter().all(|t| matches!(t, Template::Literal(_))) {
                    literal(node)
                } else {
                    Template::Array(items)
                }
            }
            Value::Map(entries) => {
                let entries: Vec<(String, Template)> = entries
                    .iter()
                    .map(|e| (e.key.clone(), self.template(&e.value, params)))
                    .collect();
                if entries
                    .iter()
                    .all(|(_, t)| matches!(t, Template::Literal(_)))
                {
                    literal(node)
                } else {
                    Template::Map(entries)
                }
            }
            _ => literal(node),
        }
    }
}
