//! Test data shared by the integration tests: an in-memory agent catalog (the real one
//! reads installed bundles, which these tests have no use for) and small helpers.
#![allow(dead_code)] // each test binary uses a different part

use runloop_openings::{AgentCatalog, AgentFacts, AgentRef, CatalogError, Opening};
use std::collections::HashMap;
use std::sync::Arc;

/// Agents by name: `(ports in, ports out, external effects)`; `broken` fails verification.
pub struct Catalog(HashMap<&'static str, AgentFacts>);

fn facts(ports_in: &[&str], ports_out: &[&str], effects: &[&str]) -> AgentFacts {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    AgentFacts {
        ports_in: own(ports_in),
        ports_out: own(ports_out),
        external_effects: own(effects),
    }
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog(HashMap::from([
            ("echo", facts(&["in", "a", "b"], &["out", "other"], &[])),
            ("contacts", facts(&[], &["out"], &[])),
            ("context", facts(&[], &["out"], &[])),
            (
                "writer",
                facts(&["recipients", "context", "topic"], &["out"], &[]),
            ),
            (
                "reviewer",
                facts(&["draft"], &["ok", "notes", "score"], &[]),
            ),
            ("mailer", facts(&["go", "draft"], &["sent"], &["mail.send"])),
        ]))
    }
}

impl AgentCatalog for Catalog {
    fn agent(&self, agent: &AgentRef) -> Result<AgentFacts, CatalogError> {
        if agent.name == "broken" {
            return Err(CatalogError::Invalid(
                "bundle broken: module digest mismatch".into(),
            ));
        }
        self.0
            .get(agent.name.as_str())
            .cloned()
            .ok_or_else(|| CatalogError::Unknown(agent.name.clone()))
    }
}

/// Validates a source that must be valid.
pub fn opening(source: &str) -> Arc<Opening> {
    match runloop_openings::validate(source, &Catalog::new()) {
        Ok(opening) => Arc::new(opening),
        Err(errors) => panic!("invalid opening:\n{errors}\n--- source:\n{source}"),
    }
}

/// A string MsgPack value.
pub fn s(text: &str) -> rmpv::Value {
    rmpv::Value::from(text)
}

/// A map MsgPack value with string keys.
pub fn map(entries: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(entries.iter().map(|(k, v)| (s(k), v.clone())).collect())
}
