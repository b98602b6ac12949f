//! YAML → [`Opening`]: every rule of the spec, each error with `line:col` and its rule.

use crate::model::{AgentFacts, AgentRef, Opening};

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

/// Parses and validates one opening's source.
pub fn validate(source: &str, catalog: &dyn AgentCatalog) -> Result<Opening, ValidationErrors> {
    let _ = (source, catalog);
    todo!("helper: validate")
}
