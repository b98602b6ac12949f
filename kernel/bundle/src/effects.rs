//! The closed set of side effects the kernel performs for agents, each with its class.
//!
//! An agent never touches the world itself: it asks `effect.perform {kind, payload,
//! idempotency_key}` and the kernel's executor for `kind` acts. The class decides whether a
//! person must say yes first: `send`, `delete` and `spend` do while an opening's
//! `policy.confirm_external` is true (the default, and always for agents outside a run);
//! `local` effects stay on this machine and need a yes only when the agent's grant says
//! `confirm=required`.

use std::fmt;

/// What an effect does to the world beyond the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EffectClass {
    /// Something leaves the machine (mail, a message, a request to a service).
    Send,
    /// Something is destroyed.
    Delete,
    /// Money or a metered resource is spent.
    Spend,
    /// Stays inside the run's own state (an artifact file).
    Local,
}

impl EffectClass {
    /// The class's name, as docs and errors write it.
    pub fn name(self) -> &'static str {
        match self {
            EffectClass::Send => "send",
            EffectClass::Delete => "delete",
            EffectClass::Spend => "spend",
            EffectClass::Local => "local",
        }
    }

    /// Whether effects of this class need a person's yes while `confirm_external` holds.
    pub fn is_external(self) -> bool {
        !matches!(self, EffectClass::Local)
    }
}

impl fmt::Display for EffectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An effect kind (closed: one executor each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EffectKind {
    /// Send an email: a Maildir outbox by default, SMTP when configured.
    MailSend,
    /// Save a file into the run's artifacts directory.
    ArtifactSave,
    /// Delete a file from the run's artifacts directory.
    ArtifactDelete,
}

impl EffectKind {
    /// Every kind.
    pub const ALL: [EffectKind; 3] = [
        EffectKind::MailSend,
        EffectKind::ArtifactSave,
        EffectKind::ArtifactDelete,
    ];

    /// The kind's wire name, as `effect.perform` and `policy.caps` write it.
    pub fn name(self) -> &'static str {
        match self {
            EffectKind::MailSend => "mail.send",
            EffectKind::ArtifactSave => "artifact.save",
            EffectKind::ArtifactDelete => "artifact.delete",
        }
    }

    /// The kind's class.
    pub fn class(self) -> EffectClass {
        match self {
            EffectKind::MailSend => EffectClass::Send,
            EffectKind::ArtifactSave => EffectClass::Local,
            EffectKind::ArtifactDelete => EffectClass::Delete,
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The known names, comma-separated, for errors.
    pub fn known() -> String {
        Self::ALL.map(EffectKind::name).join(", ")
    }
}

impl fmt::Display for EffectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_classes_are_fixed() {
        for kind in EffectKind::ALL {
            assert_eq!(EffectKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(EffectKind::parse("mail.sned"), None);
        assert_eq!(EffectKind::MailSend.class(), EffectClass::Send);
        assert_eq!(EffectKind::ArtifactDelete.class(), EffectClass::Delete);
        assert!(!EffectKind::ArtifactSave.class().is_external());
        assert!(EffectClass::Spend.is_external());
    }
}
