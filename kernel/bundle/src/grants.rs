//! Capability grants: a person widens or narrows one agent's `policy.caps` for a while.
//!
//! A grant names an agent (its bundle's name, so it holds for every instance of the
//! bundle: standalone and each run's), one capability line in the `policy.caps` grammar,
//! and an expiry on the kernel's injected clock:
//!
//! ```text
//! allow effect kind=mail.send confirm=required   # the op's line while the grant lasts
//! allow model.complete models=smollm2-135m max_tokens=512
//! deny kb.query                                  # the op is refused while it lasts
//! deny effect kind=mail.send                     # one effect kind (no kind: every kind)
//! ```
//!
//! While a grant is active its line replaces the bundle's line for that op (for `effect`,
//! for that kind); the newest active grant wins. A grant **narrows** when everything it
//! allows the bundle allows already, with at least the same confirmations
//! ([`Grant::within`]), and every `deny` narrows: narrowing is always admitted. Anything
//! else **extends** the bundle and is admitted only when config lists the op in
//! `security.grants.extend` ([`GrantRules`]). The kernel records grants and revocations in
//! the POG (`cap.granted`, `cap.revoked`) before they take effect, and [`GrantBook`] is
//! the live table every host call is checked through.
//!
//! Boundary: parsing, admission and lookup only; no clock of its own (callers pass the
//! kernel's `now`), no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use runloop_proto::payloads::HostCall;

use crate::caps::{CapsErrorKind, Denied, Grant, Op, Policy, Verdict};
use crate::effects::EffectKind;

/// Longest capability text of one grant.
pub const CAPABILITY_BYTES_MAX: usize = 1024;
/// Most grants active at once (a grant past it is refused until one expires or is revoked).
pub const ACTIVE_GRANTS_MAX: usize = 1_000;
/// Default longest grant: one day.
pub const MAX_TTL_MS_DEFAULT: u64 = 24 * 3_600_000;
/// Longest `security.grants.max_ttl` config may set: 30 days.
pub const MAX_TTL_MS_LIMIT: u64 = 30 * 24 * 3_600_000;
/// Longest grant id, reason or `by` text.
pub const GRANT_TEXT_BYTES_MAX: usize = 256;
/// What `security.grants.extend` holds when config does not say: ops that reach nothing
/// outside the sandbox.
pub const EXTEND_DEFAULT: [&str; 3] = ["clock.now", "random.bytes", "log"];

pub use runloop_proto::payloads::{
    GrantChange as Change, GrantInfo as GrantRecord, GrantRule as Rule,
};

/// Why a capability text or a grant is refused; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("capability is empty: write e.g. \"effect kind=mail.send\" or \"deny kb.query\"")]
    Empty,
    #[error("capability is {bytes} bytes, at most {CAPABILITY_BYTES_MAX}")]
    TooLong { bytes: usize },
    #[error("capability: {0}")]
    Syntax(CapsErrorKind),
    #[error("\"deny {op}\" takes no options (only \"deny effect kind=<kind>\" names a kind)")]
    DenyOptions { op: Op },
    #[error(
        "this grant extends agent {agent}'s policy ({pattern} beyond what its policy.caps allows) and config does not allow that: add {pattern:?} to security.grants.extend (now: {allowed})"
    )]
    ExtendNotAllowed {
        agent: String,
        pattern: String,
        allowed: String,
    },
    #[error("ttl must be 1 ms to {max} (security.grants.max_ttl), got {asked_ms} ms", max = human_ms(*max_ms))]
    BadTtl { asked_ms: u64, max_ms: u64 },
    #[error("{ACTIVE_GRANTS_MAX} grants are active already: revoke some (rlp cap revoke) first")]
    TooMany,
    #[error("{field} must be 1 to {GRANT_TEXT_BYTES_MAX} bytes of printable text")]
    BadText { field: &'static str },
    #[error("no active grant {id} (rlp cap ls lists them; expired and revoked ones are gone)")]
    NoSuchGrant { id: String },
}

/// One parsed capability: `allow <op> [options]` or `deny <op> [kind=<effect kind>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub rule: Rule,
    pub op: Op,
    /// The effect kind an `effect` capability is about (`None`: every kind, deny only).
    pub kind: Option<EffectKind>,
    /// For `allow`, the one-line policy the op is checked against while the grant lasts;
    /// empty for `deny`.
    policy: Policy,
    /// The text as given, trimmed, with the rule word made explicit.
    text: String,
}

impl Capability {
    /// Parses a capability; a leading `allow` is optional.
    pub fn parse(text: &str) -> Result<Self, GrantError> {
        if text.len() > CAPABILITY_BYTES_MAX {
            return Err(GrantError::TooLong { bytes: text.len() });
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let (rule, rest) = match words.split_first() {
            None => return Err(GrantError::Empty),
            Some((&"deny", rest)) => (Rule::Deny, rest),
            Some((&"allow", rest)) => (Rule::Allow, rest),
            Some(_) => (Rule::Allow, words.as_slice()),
        };
        let line = format!("{} {}", rule.name(), rest.join(" "));
        match rule {
            Rule::Allow => {
                let (op, grant) = crate::caps::parse_allow(&line, 1).map_err(GrantError::Syntax)?;
                let kind = match &grant {
                    Grant::Effect { kinds } => kinds.keys().next().copied(),
                    _ => None,
                };
                Ok(Self {
                    rule,
                    op,
                    kind,
                    policy: Policy::single(op, grant),
                    text: line,
                })
            }
            Rule::Deny => {
                let (op_word, options) = rest
                    .split_first()
                    .ok_or(GrantError::Syntax(CapsErrorKind::MissingOp))?;
                // The op word is checked by the policy parser (its error names the op).
                let (op, _) = crate::caps::parse_allow(&format!("allow {op_word}"), 1)
                    .or_else(|e| match e {
                        CapsErrorKind::MissingEffectKind => Ok((Op::EffectPerform, Grant::Plain)),
                        other => Err(other),
                    })
                    .map_err(GrantError::Syntax)?;
                let kind = match (op, options) {
                    (_, []) => None,
                    (Op::EffectPerform, [option]) => {
                        let value = option
                            .strip_prefix("kind=")
                            .ok_or(GrantError::DenyOptions { op })?;
                        Some(EffectKind::parse(value).ok_or_else(|| {
                            GrantError::Syntax(CapsErrorKind::BadValue {
                                key: "kind".into(),
                                value: value.into(),
                                reason: "not an effect kind (mail.send, artifact.save, artifact.delete)",
                            })
                        })?)
                    }
                    _ => return Err(GrantError::DenyOptions { op }),
                };
                Ok(Self {
                    rule,
                    op,
                    kind,
                    policy: Policy::default(),
                    text: line,
                })
            }
        }
    }

    /// The capability as text (`allow …` or `deny …`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What `security.grants.extend` must list for this capability to extend a policy:
    /// the op's policy word, and `effect:<kind>` for an effect.
    pub fn pattern(&self) -> String {
        match self.kind {
            Some(kind) => format!("effect:{}", kind.name()),
            None => self.op.policy_word().to_owned(),
        }
    }

    /// Whether a call of `op` (effect `kind`) is governed by this capability.
    pub fn governs(&self, op: Op, kind: Option<EffectKind>) -> bool {
        self.op == op && (self.kind.is_none() || self.kind == kind)
    }

    /// Narrow or extend, against the bundle's own `policy`.
    pub fn change(&self, policy: &Policy) -> Change {
        let Some(mine) = self.policy.grant(self.op) else {
            return Change::Narrow; // deny
        };
        match policy.grant(self.op) {
            Some(theirs) if mine.within(theirs) => Change::Narrow,
            _ => Change::Extend,
        }
    }
}

/// What config allows grants to do (`security.grants`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRules {
    /// Glob patterns over [`Capability::pattern`]: the ops a grant may extend.
    pub extend: Vec<String>,
    /// Longest grant.
    pub max_ttl_ms: u64,
}

impl Default for GrantRules {
    fn default() -> Self {
        Self {
            extend: EXTEND_DEFAULT.map(str::to_owned).to_vec(),
            max_ttl_ms: MAX_TTL_MS_DEFAULT,
        }
    }
}

impl GrantRules {
    /// Whether config lets a grant extend a policy with `capability`.
    pub fn may_extend(&self, capability: &Capability) -> bool {
        let pattern = capability.pattern();
        self.extend
            .iter()
            .any(|p| crate::glob::matches(p.as_bytes(), pattern.as_bytes()))
    }

    /// Admits `capability` for `agent` (whose bundle's policy is `policy`) for `ttl_ms`:
    /// the change it makes, or why config refuses it.
    pub fn admit(
        &self,
        agent: &str,
        capability: &Capability,
        policy: &Policy,
        ttl_ms: u64,
    ) -> Result<Change, GrantError> {
        if ttl_ms == 0 || ttl_ms > self.max_ttl_ms {
            return Err(GrantError::BadTtl {
                asked_ms: ttl_ms,
                max_ms: self.max_ttl_ms,
            });
        }
        let change = capability.change(policy);
        if change == Change::Extend && !self.may_extend(capability) {
            return Err(GrantError::ExtendNotAllowed {
                agent: agent.to_owned(),
                pattern: capability.pattern(),
                allowed: if self.extend.is_empty() {
                    "nothing".into()
                } else {
                    self.extend.join(", ")
                },
            });
        }
        Ok(change)
    }
}

/// Checks a grant's free-text fields.
pub fn check_text(field: &'static str, text: &str) -> Result<(), GrantError> {
    if text.is_empty() || text.len() > GRANT_TEXT_BYTES_MAX || text.chars().any(char::is_control) {
        return Err(GrantError::BadText { field });
    }
    Ok(())
}

#[derive(Debug)]
struct Active {
    record: GrantRecord,
    capability: Capability,
}

/// The grants in force, shared by every agent of a kernel and the control plane.
#[derive(Debug, Clone, Default)]
pub struct GrantBook {
    rules: GrantRules,
    /// By agent, oldest first (the last governing one wins).
    active: Arc<RwLock<BTreeMap<String, Vec<Arc<Active>>>>>,
}

/// Which rule decided a host call: the bundle's policy or a grant.
#[derive(Debug, Clone)]
enum Source<'p> {
    Policy(&'p Policy),
    Grant(Arc<Active>),
}

/// The policy a call is checked against, and where it came from.
#[derive(Debug, Clone)]
pub struct Effective<'p> {
    source: Source<'p>,
}

impl Effective<'_> {
    /// The policy to check the call against (a grant's one line, or the bundle's).
    pub fn policy(&self) -> &Policy {
        match &self.source {
            Source::Policy(policy) => policy,
            Source::Grant(active) => &active.capability.policy,
        }
    }

    /// The grant that decided, if one did.
    pub fn grant(&self) -> Option<&GrantRecord> {
        match &self.source {
            Source::Policy(_) => None,
            Source::Grant(active) => Some(&active.record),
        }
    }

    /// The rule that decides a call of `op` (`kind`), for people: a grant, or a line of
    /// `policy.caps`, or the default deny.
    pub fn rule(&self, op: Op, kind: Option<EffectKind>, now_ms: u64) -> String {
        match &self.source {
            Source::Grant(active) => format!(
                "grant {} \"{}\" (by {}, expires in {})",
                active.record.grant_id,
                active.record.capability,
                active.record.by,
                human_ms(active.record.expires_ms.saturating_sub(now_ms))
            ),
            Source::Policy(policy) => match policy.line_of(op, kind) {
                Some(line) => format!("policy.caps line {line}"),
                None => "policy.caps (no line allows it: everything not allowed is denied)".into(),
            },
        }
    }
}

/// A denied call, with the rule that denied it and how a person can allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub denied: Denied,
    pub rule: String,
    /// What to run to allow the call, with any config it needs.
    pub remedy: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [rule: {}]", self.denied, self.rule)?;
        if let Some(remedy) = &self.remedy {
            write!(f, "; {remedy}")?;
        }
        Ok(())
    }
}

impl GrantBook {
    /// An empty book under `rules`.
    pub fn new(rules: GrantRules) -> Self {
        Self {
            rules,
            active: Arc::default(),
        }
    }

    pub fn rules(&self) -> &GrantRules {
        &self.rules
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Vec<Arc<Active>>>> {
        self.active.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Vec<Arc<Active>>>> {
        self.active.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a new grant in force once it is recorded; refused past [`ACTIVE_GRANTS_MAX`].
    /// An expired record is ignored.
    pub fn insert(&self, record: GrantRecord, now_ms: u64) -> Result<(), GrantError> {
        self.put(record, now_ms, true)
    }

    /// Puts a grant read back from the record in force (at boot): no count limit, since it
    /// was admitted when it was granted. An expired record is ignored.
    pub fn restore(&self, record: GrantRecord, now_ms: u64) -> Result<(), GrantError> {
        self.put(record, now_ms, false)
    }

    fn put(&self, record: GrantRecord, now_ms: u64, limit: bool) -> Result<(), GrantError> {
        let capability = Capability::parse(&record.capability)?;
        let mut active = self.write();
        prune(&mut active, now_ms);
        if record.expires_ms <= now_ms {
            return Ok(());
        }
        if limit && active.values().map(Vec::len).sum::<usize>() >= ACTIVE_GRANTS_MAX {
            return Err(GrantError::TooMany);
        }
        let list = active.entry(record.agent.clone()).or_default();
        list.retain(|a| a.record.grant_id != record.grant_id);
        list.push(Arc::new(Active { record, capability }));
        Ok(())
    }

    /// Whether one more grant fits.
    pub fn has_room(&self, now_ms: u64) -> bool {
        let mut active = self.write();
        prune(&mut active, now_ms);
        active.values().map(Vec::len).sum::<usize>() < ACTIVE_GRANTS_MAX
    }

    /// Takes a grant out of force; its record, or `None` when no active grant has the id.
    pub fn remove(&self, grant_id: &str, now_ms: u64) -> Option<GrantRecord> {
        let mut active = self.write();
        prune(&mut active, now_ms);
        let mut found = None;
        for list in active.values_mut() {
            if let Some(at) = list.iter().position(|a| a.record.grant_id == grant_id) {
                found = Some(list.remove(at).record.clone());
            }
        }
        active.retain(|_, list| !list.is_empty());
        found
    }

    /// The active grant `grant_id`.
    pub fn get(&self, grant_id: &str, now_ms: u64) -> Option<GrantRecord> {
        self.read()
            .values()
            .flatten()
            .find(|a| a.record.grant_id == grant_id && a.record.expires_ms > now_ms)
            .map(|a| a.record.clone())
    }

    /// The grants in force at `now_ms`, by agent, oldest first.
    pub fn list(&self, now_ms: u64) -> Vec<GrantRecord> {
        self.read()
            .values()
            .flatten()
            .filter(|a| a.record.expires_ms > now_ms)
            .map(|a| a.record.clone())
            .collect()
    }

    /// The policy a call of `agent` (whose bundle's policy is `policy`) is checked
    /// against at `now_ms`: the newest active grant that governs the call, else the
    /// bundle's policy.
    pub fn effective<'p>(
        &self,
        agent: &str,
        policy: &'p Policy,
        call: &HostCall,
        now_ms: u64,
    ) -> Effective<'p> {
        let op = Op::of(call);
        let kind = effect_kind(call);
        let active = self.read();
        let winner = active.get(agent).and_then(|list| {
            list.iter()
                .rev()
                .find(|a| a.record.expires_ms > now_ms && a.capability.governs(op, kind))
        });
        Effective {
            source: match winner {
                Some(active) => Source::Grant(active.clone()),
                None => Source::Policy(policy),
            },
        }
    }

    /// Decides one host call of `agent`: allowed (with the policy that allowed it), or
    /// refused with the rule and the remedy.
    pub fn check<'p>(
        &self,
        agent: &str,
        policy: &'p Policy,
        call: &HostCall,
        now_ms: u64,
    ) -> Result<(Verdict, Effective<'p>), Refusal> {
        let effective = self.effective(agent, policy, call, now_ms);
        match effective.policy().check(call) {
            Ok(verdict) => Ok((verdict, effective)),
            Err(denied) => {
                let op = Op::of(call);
                let kind = effect_kind(call);
                let rule = effective.rule(op, kind, now_ms);
                let remedy = self.remedy(agent, policy, &effective, call);
                Err(Refusal {
                    denied,
                    rule,
                    remedy,
                })
            }
        }
    }

    /// How a person allows a denied call: revoke the denying grant, or grant a line that
    /// covers the call (saying when config must allow extending first).
    fn remedy(
        &self,
        agent: &str,
        policy: &Policy,
        effective: &Effective<'_>,
        call: &HostCall,
    ) -> Option<String> {
        if let Some(grant) = effective.grant()
            && grant.rule == Rule::Deny
        {
            return Some(format!(
                "to allow it again: rlp cap revoke {}",
                grant.grant_id
            ));
        }
        let line = covering_line(call, effective.policy().grant(Op::of(call)))?;
        let capability = Capability::parse(&line).ok()?;
        let mut text = format!("to allow it for a while: rlp cap grant {agent} '{line}' --ttl 1h");
        if capability.change(policy) == Change::Extend && !self.rules.may_extend(&capability) {
            text.push_str(&format!(
                " (config must list {:?} in security.grants.extend first)",
                capability.pattern()
            ));
        }
        Some(text)
    }
}

fn prune(active: &mut BTreeMap<String, Vec<Arc<Active>>>, now_ms: u64) {
    for list in active.values_mut() {
        list.retain(|a| a.record.expires_ms > now_ms);
    }
    active.retain(|_, list| !list.is_empty());
}

/// The effect kind of an `effect.perform` call, when it names a known one.
fn effect_kind(call: &HostCall) -> Option<EffectKind> {
    match call {
        HostCall::EffectPerform { kind, .. } => EffectKind::parse(kind),
        _ => None,
    }
}

fn joined(list: &Option<std::collections::BTreeSet<String>>, extra: Option<&String>) -> String {
    let mut items: Vec<&String> = list.iter().flatten().collect();
    if let Some(extra) = extra
        && !items.contains(&extra)
    {
        items.push(extra);
    }
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A capability line that allows `call`, keeping what `current` (the line that decided)
/// restricts where the call fits in it. `None` when no line can allow it (an unknown
/// effect kind).
fn covering_line(call: &HostCall, current: Option<&Grant>) -> Option<String> {
    let line = match (call, current) {
        (HostCall::RandomBytes { len }, _) => format!("random.bytes max_len={len}"),
        (
            HostCall::ModelComplete {
                model, max_tokens, ..
            },
            current,
        ) => {
            let mut line = "model.complete".to_owned();
            if let (Some(model), Some(Grant::ModelComplete { models, .. })) = (model, current) {
                line.push_str(&format!(" models={}", joined(models, Some(model))));
            }
            if let (
                Some(asked),
                Some(Grant::ModelComplete {
                    max_tokens: Some(max),
                    ..
                }),
            ) = (max_tokens, current)
            {
                line.push_str(&format!(" max_tokens={}", (*asked).max(*max)));
            }
            line
        }
        (HostCall::ModelEmbed { model, .. }, current) => match (model, current) {
            (Some(model), Some(Grant::ModelEmbed { models })) => {
                format!("model.embed models={}", joined(models, Some(model)))
            }
            _ => "model.embed".to_owned(),
        },
        (HostCall::KbWriteEvent { kind, scope, .. }, current) => match current {
            Some(Grant::KbWriteEvent {
                kinds,
                scopes,
                confirm_required,
            }) => {
                let mut line = format!("kb.write_event kinds={}", joined(kinds, Some(kind)));
                if scopes.is_some()
                    && let Some(scope) = scope
                {
                    line.push_str(&format!(" scopes={}", joined(scopes, Some(scope))));
                }
                if *confirm_required {
                    line.push_str(" confirm=required");
                }
                line
            }
            _ => format!("kb.write_event kinds={kind}"),
        },
        (HostCall::EffectPerform { kind, .. }, _) => {
            let kind = EffectKind::parse(kind)?;
            format!("effect kind={} confirm=required", kind.name())
        }
        (other, _) => Op::of(other).policy_word().to_owned(),
    };
    Some(line)
}

/// A duration for people: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn human_ms(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s.div_ceil(60)),
        3_600..86_400 => match (s / 3_600, (s % 3_600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ => match (s / 86_400, (s % 86_400) / 3_600) {
            (d, 0) => format!("{d} d"),
            (d, h) => format!("{d} d {h} h"),
        },
    }
}

/// Parses a duration: a number and a unit (`ms`, `s`, `m`/`min`, `h`, `d`), e.g. `90s`,
/// `1h`, `30 min`.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(scale)
}
