//! `policy.caps`: which host calls an agent may make, in a small line-based grammar.
//!
//! ```text
//! # comments and blank lines are ignored
//! runloop-caps 1                                  # first statement, always
//! allow clock.now
//! allow random.bytes max_len=32
//! allow log
//! allow model.complete models=smollm2-135m max_tokens=256
//! allow model.embed models=smollm2-135m
//! allow kb.query scopes=personal,work                # only rows of these scopes
//! allow kb.write_event kinds=contact.seen,note scopes=personal confirm=required
//! allow confirm.request
//! allow effect kind=mail.send confirm=required       # one line per effect kind
//! allow effect kind=artifact.save
//! ```
//!
//! Everything not allowed is denied. Each op appears at most once, except `effect`, which
//! appears once per effect kind ([`crate::effects::EffectKind`], closed); each option at most
//! once per line; lists are comma-separated without spaces. Every bad line is an error
//! naming its line number. The kernel, never the sandbox, applies the parsed [`Policy`]
//! to each `HostCall` with [`Policy::check`].
//!
//! This is the only capability model: `kb.query scopes=` is not a check on the call (an
//! arbitrary SQL text cannot be judged by its words) but a restriction the kernel hands to
//! the POG with the query ([`Policy::kb_query_scopes`]), which then runs it against
//! scope-filtered views (`runloop_pog::scoped`). A scope is lowercase, so `scopes=` items
//! are refused with an upper-case letter: such a grant could never match a row.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use runloop_proto::payloads::{HostCall, RANDOM_BYTES_MAX};

use crate::effects::EffectKind;

/// Most bytes of a policy file.
pub const CAPS_BYTES_MAX: usize = 16 * 1024;
/// Longest line.
pub const LINE_BYTES_MAX: usize = 1024;
/// Most items in one option's list.
pub const LIST_ITEMS_MAX: usize = 64;
/// Longest item in a list (a model name, kind or scope).
pub const ITEM_BYTES_MAX: usize = 128;
/// The header every policy starts with.
pub const HEADER: &str = "runloop-caps 1";

/// A host-call op (closed: the ABI's op table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    ClockNow,
    RandomBytes,
    Log,
    ModelComplete,
    ModelEmbed,
    KbQuery,
    KbWriteEvent,
    ConfirmRequest,
    EffectPerform,
}

impl Op {
    /// Every op, in the ABI's order.
    pub const ALL: [Op; 9] = [
        Op::ClockNow,
        Op::RandomBytes,
        Op::Log,
        Op::ModelComplete,
        Op::ModelEmbed,
        Op::KbQuery,
        Op::KbWriteEvent,
        Op::ConfirmRequest,
        Op::EffectPerform,
    ];

    /// The op's wire name, as in `HostCall::op`.
    pub fn name(self) -> &'static str {
        match self {
            Op::ClockNow => "clock.now",
            Op::RandomBytes => "random.bytes",
            Op::Log => "log",
            Op::ModelComplete => "model.complete",
            Op::ModelEmbed => "model.embed",
            Op::KbQuery => "kb.query",
            Op::KbWriteEvent => "kb.write_event",
            Op::ConfirmRequest => "confirm.request",
            Op::EffectPerform => "effect.perform",
        }
    }

    /// The word a policy line names the op with: the wire name, except `effect`.
    pub fn policy_word(self) -> &'static str {
        match self {
            Op::EffectPerform => "effect",
            other => other.name(),
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.policy_word() == word)
    }

    /// The op of a host call.
    pub fn of(call: &HostCall) -> Self {
        match call {
            HostCall::ClockNow => Op::ClockNow,
            HostCall::RandomBytes { .. } => Op::RandomBytes,
            HostCall::Log { .. } => Op::Log,
            HostCall::ModelComplete { .. } => Op::ModelComplete,
            HostCall::ModelEmbed { .. } => Op::ModelEmbed,
            HostCall::KbQuery { .. } => Op::KbQuery,
            HostCall::KbWriteEvent { .. } => Op::KbWriteEvent,
            HostCall::ConfirmRequest { .. } => Op::ConfirmRequest,
            HostCall::EffectPerform { .. } => Op::EffectPerform,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsErrorKind {
    #[error("policy file is {bytes} bytes, at most {CAPS_BYTES_MAX}")]
    FileTooLarge { bytes: usize },
    #[error("line is {bytes} bytes, at most {LINE_BYTES_MAX}")]
    LineTooLong { bytes: usize },
    #[error("expected the header {HEADER:?} first, found {found:?}")]
    MissingHeader { found: String },
    #[error("the policy is empty: it must start with {HEADER:?}")]
    Empty,
    #[error("unknown statement {word:?} (expected \"allow\")")]
    UnknownStatement { word: String },
    #[error("\"allow\" needs an op")]
    MissingOp,
    #[error("unknown op {op:?}")]
    UnknownOp { op: String },
    #[error("{op} is already allowed on line {first_line}")]
    DuplicateOp { op: Op, first_line: usize },
    #[error("effect kind {kind} is already allowed on line {first_line}")]
    DuplicateEffect { kind: EffectKind, first_line: usize },
    #[error("\"allow effect\" needs kind=<one of {known}>", known = EffectKind::known())]
    MissingEffectKind,
    #[error("{word:?} is not an option (expected key=value)")]
    NotAnOption { word: String },
    #[error("{op} has no option {key:?}")]
    UnknownOption { op: Op, key: String },
    #[error("option {key:?} given twice")]
    DuplicateOption { key: String },
    #[error("option {key}={value:?}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: &'static str,
    },
}

/// A policy file that does not parse, with the 1-based line at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct CapsError {
    pub line: usize,
    pub kind: CapsErrorKind,
}

/// One op's allowance and its restrictions (`None` means unrestricted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Plain,
    RandomBytes {
        max_len: Option<u32>,
    },
    ModelComplete {
        models: Option<BTreeSet<String>>,
        max_tokens: Option<u32>,
    },
    ModelEmbed {
        models: Option<BTreeSet<String>>,
    },
    /// `kb.query`; with `scopes`, the query sees only rows of those scopes.
    KbQuery {
        scopes: Option<BTreeSet<String>>,
    },
    KbWriteEvent {
        kinds: Option<BTreeSet<String>>,
        scopes: Option<BTreeSet<String>>,
        confirm_required: bool,
    },
    /// `effect`: the allowed kinds, each with its line and whether the grant itself asks
    /// for a person's yes (`confirm=required`; the kind's class may ask too).
    Effect {
        kinds: BTreeMap<EffectKind, EffectGrant>,
    },
}

fn list_within(inner: &Option<BTreeSet<String>>, outer: &Option<BTreeSet<String>>) -> bool {
    match (inner, outer) {
        (_, None) => true,
        (Some(inner), Some(outer)) => inner.is_subset(outer),
        (None, Some(_)) => false,
    }
}

fn number_within(inner: Option<u32>, outer: Option<u32>) -> bool {
    match (inner, outer) {
        (_, None) => true,
        (Some(inner), Some(outer)) => inner <= outer,
        (None, Some(_)) => false,
    }
}

impl Grant {
    /// Whether every call this grant allows is allowed by `outer` too, and needs at least
    /// the confirmations `outer` needs: `self` narrows (or equals) `outer`. Grants of
    /// different ops are never within each other; effect grants compare kind by kind.
    pub fn within(&self, outer: &Grant) -> bool {
        match (self, outer) {
            (Grant::Plain, Grant::Plain) => true,
            (Grant::RandomBytes { max_len: a }, Grant::RandomBytes { max_len: b }) => {
                number_within(*a, *b)
            }
            (
                Grant::ModelComplete {
                    models: am,
                    max_tokens: at,
                },
                Grant::ModelComplete {
                    models: bm,
                    max_tokens: bt,
                },
            ) => list_within(am, bm) && number_within(*at, *bt),
            (Grant::ModelEmbed { models: a }, Grant::ModelEmbed { models: b }) => list_within(a, b),
            (Grant::KbQuery { scopes: a }, Grant::KbQuery { scopes: b }) => list_within(a, b),
            (
                Grant::KbWriteEvent {
                    kinds: ak,
                    scopes: as_,
                    confirm_required: ac,
                },
                Grant::KbWriteEvent {
                    kinds: bk,
                    scopes: bs,
                    confirm_required: bc,
                },
            ) => list_within(ak, bk) && list_within(as_, bs) && (*ac || !*bc),
            (Grant::Effect { kinds: a }, Grant::Effect { kinds: b }) => {
                a.iter().all(|(kind, g)| {
                    b.get(kind)
                        .is_some_and(|outer| g.confirm_required || !outer.confirm_required)
                })
            }
            _ => false,
        }
    }
}

/// One `allow effect kind=…` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectGrant {
    pub line: usize,
    pub confirm_required: bool,
}

/// A parsed policy: the grants by op, each with the line it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    grants: BTreeMap<Op, (usize, Grant)>,
}

/// What the kernel must do with an allowed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Allowed once a person confirms (`confirm=required`).
    AllowedAfterConfirm,
}

/// Why a call is denied (the kernel answers `CapabilityDenied` with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{op} is not allowed by the agent's policy")]
    NotGranted { op: Op },
    #[error("{op}: {asked} bytes asked, the policy allows at most {max}")]
    TooManyBytes { op: Op, asked: u32, max: u32 },
    #[error("{op}: model {model:?} is not in the policy's models")]
    ModelNotAllowed { op: Op, model: Option<String> },
    #[error("{op}: max_tokens {asked:?} asked, the policy allows at most {max}")]
    TooManyTokens {
        op: Op,
        asked: Option<u32>,
        max: u32,
    },
    #[error("{op}: kind {kind:?} is not in the policy's kinds")]
    KindNotAllowed { op: Op, kind: String },
    #[error("{op}: scope {scope:?} is not in the policy's scopes")]
    ScopeNotAllowed { op: Op, scope: Option<String> },
    #[error("{op}: {kind:?} is not an effect kind (known: {known})", known = EffectKind::known())]
    UnknownEffect { op: Op, kind: String },
    #[error(
        "{op}: effect kind {kind} is not allowed by the agent's policy (add \"allow effect kind={kind}\")"
    )]
    EffectNotAllowed { op: Op, kind: EffectKind },
}

fn in_list(list: &Option<BTreeSet<String>>, item: Option<&String>) -> bool {
    match (list, item) {
        (None, _) => true,
        (Some(list), Some(item)) => list.contains(item),
        (Some(_), None) => false,
    }
}

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Self, CapsError> {
        if text.len() > CAPS_BYTES_MAX {
            return Err(CapsError {
                line: 1,
                kind: CapsErrorKind::FileTooLarge { bytes: text.len() },
            });
        }
        let mut policy = Policy::default();
        let mut seen_header = false;
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let at = |kind| CapsError { line, kind };
            if raw_line.len() > LINE_BYTES_MAX {
                return Err(at(CapsErrorKind::LineTooLong {
                    bytes: raw_line.len(),
                }));
            }
            let content = raw_line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            if !seen_header {
                let words: Vec<&str> = content.split_whitespace().collect();
                if words != ["runloop-caps", "1"] {
                    return Err(at(CapsErrorKind::MissingHeader {
                        found: content.to_owned(),
                    }));
                }
                seen_header = true;
                continue;
            }
            let (op, grant) = parse_allow(content, line).map_err(at)?;
            if let (Grant::Effect { kinds: new }, Some((_, Grant::Effect { kinds: existing }))) =
                (&grant, policy.grants.get_mut(&op))
            {
                for (kind, effect) in new {
                    if let Some(first) = existing.get(kind) {
                        return Err(at(CapsErrorKind::DuplicateEffect {
                            kind: *kind,
                            first_line: first.line,
                        }));
                    }
                    existing.insert(*kind, *effect);
                }
                continue;
            }
            if let Some((first_line, _)) = policy.grants.get(&op) {
                return Err(at(CapsErrorKind::DuplicateOp {
                    op,
                    first_line: *first_line,
                }));
            }
            policy.grants.insert(op, (line, grant));
        }
        if !seen_header {
            return Err(CapsError {
                line: 1,
                kind: CapsErrorKind::Empty,
            });
        }
        Ok(policy)
    }

    /// A policy of exactly one `allow` line (a capability grant's), as if it were line 1.
    pub(crate) fn single(op: Op, grant: Grant) -> Self {
        Self {
            grants: BTreeMap::from([(op, (1, grant))]),
        }
    }

    /// The 1-based line of `policy.caps` that allows `op` (for an effect, the line of
    /// `kind`), if any: the rule a decision on that op came from.
    pub fn line_of(&self, op: Op, kind: Option<EffectKind>) -> Option<usize> {
        match (self.grants.get(&op)?, kind) {
            ((_, Grant::Effect { kinds }), Some(kind)) => kinds.get(&kind).map(|g| g.line),
            ((_, Grant::Effect { .. }), None) => None,
            ((line, _), _) => Some(*line),
        }
    }

    /// The grant for `op`, if the policy allows it at all.
    pub fn grant(&self, op: Op) -> Option<&Grant> {
        self.grants.get(&op).map(|(_, grant)| grant)
    }

    /// What an allowed `kb.query` may read: `Ok(None)` every row, `Ok(Some(scopes))` only
    /// rows of those scopes. `Err` when the policy does not allow `kb.query` at all, so a
    /// caller that skipped [`Policy::check`] still fails closed.
    pub fn kb_query_scopes(&self) -> Result<Option<&BTreeSet<String>>, Denied> {
        match self.grant(Op::KbQuery) {
            Some(Grant::KbQuery { scopes }) => Ok(scopes.as_ref()),
            Some(other) => unreachable!("kb.query parsed into {other:?}"),
            None => Err(Denied::NotGranted { op: Op::KbQuery }),
        }
    }

    /// The effect kinds the policy allows, with their grants.
    pub fn effects(&self) -> impl Iterator<Item = (EffectKind, EffectGrant)> + '_ {
        let kinds = match self.grant(Op::EffectPerform) {
            Some(Grant::Effect { kinds }) => Some(kinds),
            _ => None,
        };
        kinds.into_iter().flatten().map(|(k, g)| (*k, *g))
    }

    /// The ops the policy allows, in the ABI's order.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.grants.keys().copied()
    }

    /// Decides one host call.
    pub fn check(&self, call: &HostCall) -> Result<Verdict, Denied> {
        let op = Op::of(call);
        let Some(grant) = self.grant(op) else {
            return Err(Denied::NotGranted { op });
        };
        match (grant, call) {
            (Grant::RandomBytes { max_len: Some(max) }, HostCall::RandomBytes { len })
                if len > max =>
            {
                Err(Denied::TooManyBytes {
                    op,
                    asked: *len,
                    max: *max,
                })
            }
            (
                Grant::ModelComplete { models, max_tokens },
                HostCall::ModelComplete {
                    model,
                    max_tokens: asked,
                    ..
                },
            ) => {
                if !in_list(models, model.as_ref()) {
                    return Err(Denied::ModelNotAllowed {
                        op,
                        model: model.clone(),
                    });
                }
                match (max_tokens, asked) {
                    (Some(max), Some(asked)) if asked <= max => Ok(Verdict::Allowed),
                    (Some(max), asked) => Err(Denied::TooManyTokens {
                        op,
                        asked: *asked,
                        max: *max,
                    }),
                    (None, _) => Ok(Verdict::Allowed),
                }
            }
            (Grant::ModelEmbed { models }, HostCall::ModelEmbed { model, .. })
                if !in_list(models, model.as_ref()) =>
            {
                Err(Denied::ModelNotAllowed {
                    op,
                    model: model.clone(),
                })
            }
            (
                Grant::KbWriteEvent {
                    kinds,
                    scopes,
                    confirm_required,
                },
                HostCall::KbWriteEvent { kind, scope, .. },
            ) => {
                if !in_list(kinds, Some(kind)) {
                    return Err(Denied::KindNotAllowed {
                        op,
                        kind: kind.clone(),
                    });
                }
                if !in_list(scopes, scope.as_ref()) {
                    return Err(Denied::ScopeNotAllowed {
                        op,
                        scope: scope.clone(),
                    });
                }
                Ok(if *confirm_required {
                    Verdict::AllowedAfterConfirm
                } else {
                    Verdict::Allowed
                })
            }
            (Grant::Effect { kinds }, HostCall::EffectPerform { kind, .. }) => {
                let Some(parsed) = EffectKind::parse(kind) else {
                    return Err(Denied::UnknownEffect {
                        op,
                        kind: kind.clone(),
                    });
                };
                match kinds.get(&parsed) {
                    None => Err(Denied::EffectNotAllowed { op, kind: parsed }),
                    Some(grant) if grant.confirm_required => Ok(Verdict::AllowedAfterConfirm),
                    Some(_) => Ok(Verdict::Allowed),
                }
            }
            _ => Ok(Verdict::Allowed),
        }
    }
}

/// The options one `allow` line carries, by key, each at most once.
struct Options<'a> {
    op: Op,
    given: BTreeMap<&'a str, &'a str>,
}

impl<'a> Options<'a> {
    fn parse(op: Op, words: &[&'a str], allowed: &[&str]) -> Result<Self, CapsErrorKind> {
        let mut given = BTreeMap::new();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(CapsErrorKind::NotAnOption {
                    word: (*word).to_owned(),
                });
            };
            if !allowed.contains(&key) {
                return Err(CapsErrorKind::UnknownOption {
                    op,
                    key: key.to_owned(),
                });
            }
            if given.insert(key, value).is_some() {
                return Err(CapsErrorKind::DuplicateOption {
                    key: key.to_owned(),
                });
            }
        }
        Ok(Self { op, given })
    }

    fn number(&self, key: &str, max: u32) -> Result<Option<u32>, CapsErrorKind> {
        let Some(value) = self.given.get(key) else {
            return Ok(None);
        };
        let bad = |reason| CapsErrorKind::BadValue {
            key: key.to_owned(),
            value: (*value).to_owned(),
            reason,
        };
        let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
        let number: u32 = value
            .parse()
            .ok()
            .filter(|_| digits)
            .ok_or_else(|| bad("expected a decimal number"))?;
        if number == 0 || number > max {
            return Err(bad("out of range"));
        }
        Ok(Some(number))
    }

    fn list(&self, key: &str) -> Result<Option<BTreeSet<String>>, CapsErrorKind> {
        let Some(value) = self.given.get(key) else {
            return Ok(None);
        };
        let bad = |reason| CapsErrorKind::BadValue {
            key: key.to_owned(),
            value: (*value).to_owned(),
            reason,
        };
        let mut items = BTreeSet::new();
        for item in value.split(',') {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-:/".contains(c);
            if item.is_empty() || item.len() > ITEM_BYTES_MAX || !item.chars().all(ok_char) {
                return Err(bad(
                    "items are 1 to 128 of a-z A-Z 0-9 . _ - : /, comma-separated",
                ));
            }
            if !items.insert(item.to_owned()) {
                return Err(bad("an item is listed twice"));
            }
        }
        if items.len() > LIST_ITEMS_MAX {
            return Err(bad("more than 64 items"));
        }
        Ok(Some(items))
    }

    /// A list of scopes: as [`Options::list`], and lowercase (scopes are, so an upper-case
    /// item could never match).
    fn scopes(&self) -> Result<Option<BTreeSet<String>>, CapsErrorKind> {
        let scopes = self.list("scopes")?;
        let upper = |s: &String| s.bytes().any(|b| b.is_ascii_uppercase());
        if scopes.iter().flatten().any(upper) {
            return Err(CapsErrorKind::BadValue {
                key: "scopes".into(),
                value: self.given["scopes"].to_owned(),
                reason: "scopes are lowercase",
            });
        }
        Ok(scopes)
    }

    fn confirm(&self) -> Result<bool, CapsErrorKind> {
        match self.given.get("confirm") {
            None => Ok(false),
            Some(&"required") => Ok(true),
            Some(value) => Err(CapsErrorKind::BadValue {
                key: "confirm".into(),
                value: (*value).to_owned(),
                reason: "the only value is \"required\"",
            }),
        }
    }
}

pub(crate) fn parse_allow(content: &str, line: usize) -> Result<(Op, Grant), CapsErrorKind> {
    let words: Vec<&str> = content.split_whitespace().collect();
    let (statement, rest) = words.split_first().expect("content is not blank");
    if *statement != "allow" {
        return Err(CapsErrorKind::UnknownStatement {
            word: (*statement).to_owned(),
        });
    }
    let (op_word, option_words) = rest.split_first().ok_or(CapsErrorKind::MissingOp)?;
    let op = Op::parse(op_word).ok_or_else(|| CapsErrorKind::UnknownOp {
        op: (*op_word).to_owned(),
    })?;
    let keys: &[&str] = match op {
        Op::RandomBytes => &["max_len"],
        Op::ModelComplete => &["models", "max_tokens"],
        Op::ModelEmbed => &["models"],
        Op::KbQuery => &["scopes"],
        Op::KbWriteEvent => &["kinds", "scopes", "confirm"],
        Op::EffectPerform => &["kind", "confirm"],
        Op::ClockNow | Op::Log | Op::ConfirmRequest => &[],
    };
    let options = Options::parse(op, option_words, keys)?;
    let grant = match options.op {
        Op::RandomBytes => Grant::RandomBytes {
            max_len: options.number("max_len", RANDOM_BYTES_MAX)?,
        },
        Op::ModelComplete => Grant::ModelComplete {
            models: options.list("models")?,
            max_tokens: options.number("max_tokens", u32::MAX)?,
        },
        Op::ModelEmbed => Grant::ModelEmbed {
            models: options.list("models")?,
        },
        Op::KbQuery => Grant::KbQuery {
            scopes: options.scopes()?,
        },
        Op::KbWriteEvent => Grant::KbWriteEvent {
            kinds: options.list("kinds")?,
            scopes: options.scopes()?,
            confirm_required: options.confirm()?,
        },
        Op::EffectPerform => {
            let kind = options
                .given
                .get("kind")
                .ok_or(CapsErrorKind::MissingEffectKind)?;
            let parsed = EffectKind::parse(kind).ok_or_else(|| CapsErrorKind::BadValue {
                key: "kind".into(),
                value: (*kind).to_owned(),
                reason: "not an effect kind (mail.send, artifact.save, artifact.delete)",
            })?;
            let grant = EffectGrant {
                line,
                confirm_required: options.confirm()?,
            };
            Grant::Effect {
                kinds: BTreeMap::from([(parsed, grant)]),
            }
        }
        Op::ClockNow | Op::Log | Op::ConfirmRequest => Grant::Plain,
    };
    Ok((op, grant))
}
