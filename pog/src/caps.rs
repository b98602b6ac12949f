//! Capability types for kb host calls and the pure check the kernel runs before forwarding
//! an agent's request to the POG actor. The kernel owns enforcement; this owns the rules.
//!
//! Rules: `kb_write` allows `kb.write_event` for the listed kinds and scopes (none listed =
//! any); `kb_read` allows `kb.search` and `kb.why` in the listed scopes, and `kb.query`
//! (arbitrary SQL, which no scope filter can bound) only when it is unrestricted. Neither
//! cap implies the other.

use std::collections::BTreeSet;

use crate::ids::Scope;
use crate::kind::EventKind;

/// Which access a capability grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KbAccess {
    /// `kb_read`.
    Read,
    /// `kb_write`.
    Write,
}

/// One kb capability, as granted in an agent's `policy.caps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbCap {
    access: KbAccess,
    scopes: Option<BTreeSet<Scope>>,
    kinds: Option<BTreeSet<EventKind>>,
}

/// A bad capability definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// A restriction list that allows nothing is almost surely a mistake.
    #[error("{what} restriction of {cap} is empty: omit it to allow all")]
    EmptyRestriction {
        cap: &'static str,
        what: &'static str,
    },
    /// Kind restrictions only make sense for writes.
    #[error("kb_read cannot be restricted by kind")]
    KindsOnRead,
}

impl KbCap {
    /// Unrestricted `kb_read`.
    pub fn read() -> KbCap {
        KbCap {
            access: KbAccess::Read,
            scopes: None,
            kinds: None,
        }
    }

    /// Unrestricted `kb_write`.
    pub fn write() -> KbCap {
        KbCap {
            access: KbAccess::Write,
            scopes: None,
            kinds: None,
        }
    }

    /// A capability with optional scope and kind restrictions.
    pub fn new(
        access: KbAccess,
        scopes: Option<BTreeSet<Scope>>,
        kinds: Option<BTreeSet<EventKind>>,
    ) -> Result<KbCap, CapError> {
        let cap = match access {
            KbAccess::Read => "kb_read",
            KbAccess::Write => "kb_write",
        };
        if scopes.as_ref().is_some_and(BTreeSet::is_empty) {
            return Err(CapError::EmptyRestriction { cap, what: "scope" });
        }
        if kinds.as_ref().is_some_and(BTreeSet::is_empty) {
            return Err(CapError::EmptyRestriction { cap, what: "kind" });
        }
        if access == KbAccess::Read && kinds.is_some() {
            return Err(CapError::KindsOnRead);
        }
        Ok(KbCap {
            access,
            scopes,
            kinds,
        })
    }

    fn allows_scope(&self, scope: Option<&Scope>) -> bool {
        match (&self.scopes, scope) {
            (None, _) => true,
            (Some(allowed), Some(s)) => allowed.contains(s),
            // A scope-limited reader must name a scope it holds.
            (Some(_), None) => false,
        }
    }
}

/// The kb capabilities one agent holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KbCapSet {
    caps: Vec<KbCap>,
}

impl KbCapSet {
    /// A set from its caps.
    pub fn new(caps: Vec<KbCap>) -> KbCapSet {
        KbCapSet { caps }
    }
}

/// A kb host call, reduced to what the check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KbRequest {
    /// `kb.write_event` of one event.
    WriteEvent {
        /// Kind being written.
        kind: EventKind,
        /// Scope being written to.
        scope: Scope,
    },
    /// `kb.query` (raw read-only SQL).
    Query,
    /// `kb.search`, optionally limited to one scope.
    Search {
        /// Scope filter of the search.
        scope: Option<Scope>,
    },
    /// `kb.why` on an entity, optionally limited to one scope.
    Why {
        /// Scope the caller reads in.
        scope: Option<Scope>,
    },
}

/// Why a request was refused; printed into `cap.audit` events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No cap of the needed access at all.
    #[error("missing capability {0}")]
    Missing(&'static str),
    /// Caps exist but none covers this scope.
    #[error("{cap} does not cover scope {scope}")]
    Scope { cap: &'static str, scope: String },
    /// Caps exist but none covers this kind.
    #[error("kb_write does not cover kind {0}")]
    Kind(&'static str),
    /// Raw SQL needs an unrestricted reader.
    #[error(
        "kb.query needs an unrestricted kb_read (scope-limited readers may use kb.search and kb.why)"
    )]
    QueryNeedsUnrestrictedRead,
}

/// Decides whether `caps` allow `req`. Pure: no I/O, no clock.
pub fn check(caps: &KbCapSet, req: &KbRequest) -> Result<(), Denied> {
    let of = |a: KbAccess| caps.caps.iter().filter(move |c| c.access == a);
    match req {
        KbRequest::WriteEvent { kind, scope } => {
            if of(KbAccess::Write).next().is_none() {
                return Err(Denied::Missing("kb_write"));
            }
            let kind_ok = |c: &KbCap| c.kinds.as_ref().is_none_or(|k| k.contains(kind));
            if of(KbAccess::Write).any(|c| kind_ok(c) && c.allows_scope(Some(scope))) {
                return Ok(());
            }
            if of(KbAccess::Write).any(kind_ok) {
                Err(Denied::Scope {
                    cap: "kb_write",
                    scope: scope.to_string(),
                })
            } else {
                Err(Denied::Kind(kind.as_str()))
            }
        }
        KbRequest::Query => {
            if of(KbAccess::Read).next().is_none() {
                return Err(Denied::Missing("kb_read"));
            }
            if of(KbAccess::Read).any(|c| c.scopes.is_none()) {
                Ok(())
            } else {
                Err(Denied::QueryNeedsUnrestrictedRead)
            }
        }
        KbRequest::Search { scope } | KbRequest::Why { scope } => {
            if of(KbAccess::Read).next().is_none() {
                return Err(Denied::Missing("kb_read"));
            }
            if of(KbAccess::Read).any(|c| c.allows_scope(scope.as_ref())) {
                Ok(())
            } else {
                Err(Denied::Scope {
                    cap: "kb_read",
                    scope: scope
                        .as_ref()
                        .map_or("(any)".to_owned(), ToString::to_string),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(s: &str) -> Scope {
        Scope::new(s).unwrap()
    }
    fn set<T: Ord>(items: impl IntoIterator<Item = T>) -> Option<BTreeSet<T>> {
        Some(items.into_iter().collect())
    }

    #[test]
    fn no_caps_denies_everything() {
        let none = KbCapSet::default();
        assert_eq!(
            check(&none, &KbRequest::Query),
            Err(Denied::Missing("kb_read"))
        );
        assert_eq!(
            check(&none, &KbRequest::Search { scope: None }),
            Err(Denied::Missing("kb_read"))
        );
        let w = KbRequest::WriteEvent {
            kind: EventKind::NoteAdded,
            scope: sc("default"),
        };
        assert_eq!(check(&none, &w), Err(Denied::Missing("kb_write")));
    }

    #[test]
    fn read_does_not_imply_write_nor_write_read() {
        let r = KbCapSet::new(vec![KbCap::read()]);
        let w = KbCapSet::new(vec![KbCap::write()]);
        let req = KbRequest::WriteEvent {
            kind: EventKind::NoteAdded,
            scope: sc("a"),
        };
        assert_eq!(check(&r, &req), Err(Denied::Missing("kb_write")));
        assert_eq!(check(&w, &req), Ok(()));
        assert_eq!(
            check(&w, &KbRequest::Why { scope: None }),
            Err(Denied::Missing("kb_read"))
        );
        assert_eq!(check(&r, &KbRequest::Query), Ok(()));
    }

    #[test]
    fn write_restrictions_name_what_failed() {
        let cap = KbCap::new(
            KbAccess::Write,
            set([sc("work")]),
            set([EventKind::NoteAdded]),
        )
        .unwrap();
        let caps = KbCapSet::new(vec![cap]);
        let ok = KbRequest::WriteEvent {
            kind: EventKind::NoteAdded,
            scope: sc("work"),
        };
        assert_eq!(check(&caps, &ok), Ok(()));
        let bad_scope = KbRequest::WriteEvent {
            kind: EventKind::NoteAdded,
            scope: sc("home"),
        };
        assert_eq!(
            check(&caps, &bad_scope),
            Err(Denied::Scope {
                cap: "kb_write",
                scope: "home".into()
            })
        );
        let bad_kind = KbRequest::WriteEvent {
            kind: EventKind::EmailSent,
            scope: sc("work"),
        };
        assert_eq!(check(&caps, &bad_kind), Err(Denied::Kind("email.sent")));
    }

    #[test]
    fn scoped_readers_search_their_scope_but_cannot_run_sql() {
        let caps = KbCapSet::new(vec![
            KbCap::new(KbAccess::Read, set([sc("work")]), None).unwrap(),
        ]);
        assert_eq!(
            check(
                &caps,
                &KbRequest::Search {
                    scope: Some(sc("work"))
                }
            ),
            Ok(())
        );
        assert!(matches!(
            check(
                &caps,
                &KbRequest::Search {
                    scope: Some(sc("home"))
                }
            ),
            Err(Denied::Scope { .. })
        ));
        assert!(matches!(
            check(&caps, &KbRequest::Why { scope: None }),
            Err(Denied::Scope { .. })
        ));
        assert_eq!(
            check(&caps, &KbRequest::Query),
            Err(Denied::QueryNeedsUnrestrictedRead)
        );
        // A second, unrestricted read cap lifts that.
        let both = KbCapSet::new(vec![
            KbCap::new(KbAccess::Read, set([sc("work")]), None).unwrap(),
            KbCap::read(),
        ]);
        assert_eq!(check(&both, &KbRequest::Query), Ok(()));
    }

    #[test]
    fn bad_cap_definitions_are_refused() {
        assert_eq!(
            KbCap::new(KbAccess::Read, Some(BTreeSet::new()), None),
            Err(CapError::EmptyRestriction {
                cap: "kb_read",
                what: "scope"
            })
        );
        assert_eq!(
            KbCap::new(KbAccess::Read, None, set([EventKind::NoteAdded])),
            Err(CapError::KindsOnRead)
        );
    }
}
