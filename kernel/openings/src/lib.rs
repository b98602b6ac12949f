//! Openings DSL v0 (`shared/specs/openings-v0.md`): YAML → a validated [`Opening`], run
//! params bound and templates rendered, and the pure run [`plan::Plan`] the kernel's run
//! actor drives (readiness, guards, skips, success predicates, output and result hashes,
//! retry backoff).
//!
//! Boundary: no I/O, no clock, no RNG of its own, no actors. The caller hands in the
//! source text, an [`AgentCatalog`] that knows the installed agents, and random draws.
//! Values are MsgPack values (`rmpv::Value`), the agents' own payload type.

pub mod expr;
pub mod hash;
pub mod model;
pub mod params;
pub mod parse;
pub mod plan;
pub mod template;
mod yaml;

pub use model::{AgentFacts, AgentRef, Edge, Node, NodeId, Opening, Policy, Retry};
pub use parse::{AgentCatalog, CatalogError, Rule, ValidationError, ValidationErrors, validate};
