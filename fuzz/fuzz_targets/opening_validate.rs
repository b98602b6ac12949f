//! Fuzzes the openings validator (`runloop_openings::validate`) and, for openings that
//! validate, param binding and the run plan's first step, with arbitrary bytes as YAML.
//!
//! Oracles: nothing panics; every error has a 1-based line and column inside the source
//! (plus one line past its end, for a missing trailing key) and a non-empty message; a
//! valid opening validates again to the same digest; binding its defaults and asking the
//! plan for its first step never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runloop_openings::plan::Plan;
use runloop_openings::{AgentCatalog, AgentFacts, AgentRef, CatalogError};

/// Two agents, like the shipped `echo` and a reviewer with two outputs and an effect.
struct Catalog;

impl AgentCatalog for Catalog {
    fn agent(&self, agent: &AgentRef) -> Result<AgentFacts, CatalogError> {
        let ports = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        match agent.name.as_str() {
            "echo" => Ok(AgentFacts {
                ports_in: ports(&["in"]),
                ports_out: ports(&["out"]),
                external_effects: Vec::new(),
            }),
            "mailer" => Ok(AgentFacts {
                ports_in: ports(&["in", "go"]),
                ports_out: ports(&["result", "ok"]),
                external_effects: vec!["mail.send".into()],
            }),
            "broken" => Err(CatalogError::Invalid("broken: digest differs".into())),
            other => Err(CatalogError::Unknown(other.to_owned())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    // YAML breaks lines at `\n`, `\r\n` and a lone `\r` (str::lines knows only the first two).
    let breaks = source.replace("\r\n", "\n").matches(['\n', '\r']).count();
    let lines = u32::try_from(breaks).unwrap_or(u32::MAX);
    match runloop_openings::validate(&source, &Catalog) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err carries at least one error");
            for e in &errors.0 {
                assert!(e.line >= 1 && e.col >= 1, "{e:?}");
                assert!(
                    e.line <= lines.saturating_add(2),
                    "line {} past the end ({lines}): {e:?}",
                    e.line
                );
                assert!(!e.message.is_empty(), "{e:?}");
            }
            let _ = errors.to_string();
        }
        Ok(opening) => {
            let again = runloop_openings::validate(&source, &Catalog).expect("validates twice");
            assert_eq!(opening.digest, again.digest);
            let _ = runloop_openings::params::bind(&opening, &serde_json::json!({}));
            let mut plan = Plan::new(std::sync::Arc::new(opening));
            let _ = plan.step();
        }
    }
});
