//! What an agent asks to send ([`MailPayload`]): its JSON shape, its limits and syntax
//! ([`MailPayload::validate`]) and the one-line summary a confirmation prompt shows.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{AddressReason, MailError, TextProblem};
use crate::{ADDRESS_BYTES_MAX, BODY_BYTES_MAX, NAME_BYTES_MAX, RECIPIENTS_MAX, SUBJECT_BYTES_MAX};

/// One address, with an optional display name.
///
/// JSON: either an object `{"name"?: "John Smith", "email": "john@example.com"}` (no other
/// keys) or a bare string `"john@example.com"`. It serializes as the object form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub email: String,
}

impl Mailbox {
    /// A mailbox without a display name.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            name: None,
            email: email.into(),
        }
    }

    /// A mailbox with a display name.
    pub fn named(name: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            email: email.into(),
        }
    }

    /// Checks the name and the address; `field` names the mailbox in errors (`to[1]`).
    pub(crate) fn check(&self, field: &str) -> Result<lettre::Address, MailError> {
        if let Some(name) = self.display_name() {
            check_line(name, NAME_BYTES_MAX).map_err(|reason| MailError::Name {
                field: format!("{field}.name"),
                reason,
            })?;
        }
        parse_address(field, &self.email)
    }

    /// The mailbox as lettre's type, after [`Mailbox::check`].
    pub(crate) fn to_lettre(&self, field: &str) -> Result<lettre::message::Mailbox, MailError> {
        let address = self.check(field)?;
        Ok(lettre::message::Mailbox::new(
            self.display_name().map(str::to_owned),
            address,
        ))
    }

    /// The display name, if there is a non-empty one: `"name": ""` counts as no name.
    pub(crate) fn display_name(&self) -> Option<&str> {
        self.name.as_deref().filter(|n| !n.is_empty())
    }
}

/// Parses one address with lettre, after our own length and control-character checks.
pub(crate) fn parse_address(field: &str, email: &str) -> Result<lettre::Address, MailError> {
    let refuse = |reason: AddressReason| MailError::Address {
        field: field.to_owned(),
        value: email.to_owned(),
        reason,
    };
    if email.len() > ADDRESS_BYTES_MAX {
        return Err(refuse(AddressReason::TooLong { bytes: email.len() }));
    }
    if let Some(c) = email.chars().find(|c| c.is_control()) {
        return Err(refuse(AddressReason::Control(c)));
    }
    email
        .parse::<lettre::Address>()
        .map_err(|e| refuse(AddressReason::Syntax(e)))
}

/// One line of header text: not empty, at most `max` bytes, no line break, no control
/// character (a tab is allowed).
fn check_line(text: &str, max: usize) -> Result<(), TextProblem> {
    if text.is_empty() {
        return Err(TextProblem::Empty);
    }
    if text.len() > max {
        return Err(TextProblem::TooLong {
            bytes: text.len(),
            max,
        });
    }
    match text.chars().find(|&c| c.is_control() && c != '\t') {
        Some('\r' | '\n') => Err(TextProblem::LineBreak),
        Some(c) => Err(TextProblem::Control(c)),
        None => Ok(()),
    }
}

/// What an agent asks to send.
///
/// JSON: `{"to": [...], "cc"?: [...], "subject": "...", "body": "..."}`, each recipient a
/// [`Mailbox`] object or a bare address; no other keys. Deserializing checks only the
/// shape; call [`MailPayload::validate`] before using it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailPayload {
    pub to: Vec<Mailbox>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub body: String,
}

impl MailPayload {
    /// Checks the limits and syntax: 1..=[`RECIPIENTS_MAX`] recipients in `to` and `cc`
    /// together, every address accepted by lettre's parser and at most
    /// [`ADDRESS_BYTES_MAX`] bytes, display names at most [`NAME_BYTES_MAX`] bytes on one
    /// line, a subject of 1..=[`SUBJECT_BYTES_MAX`] bytes on one line (no CR or LF, which
    /// would inject headers, and no other control character) and a body of at most
    /// [`BODY_BYTES_MAX`] bytes. The first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), MailError> {
        let count = self.to.len() + self.cc.len();
        if count == 0 {
            return Err(MailError::NoRecipients);
        }
        if count > RECIPIENTS_MAX {
            return Err(MailError::TooManyRecipients { count });
        }
        for (field, mailbox) in self.recipients() {
            mailbox.check(&field)?;
        }
        check_line(&self.subject, SUBJECT_BYTES_MAX)
            .map_err(|reason| MailError::Subject { reason })?;
        if self.body.len() > BODY_BYTES_MAX {
            return Err(MailError::BodyTooLong {
                bytes: self.body.len(),
            });
        }
        Ok(())
    }

    /// Every recipient with its field name (`to[0]`, ..., `cc[0]`, ...), `to` first.
    pub(crate) fn recipients(&self) -> impl Iterator<Item = (String, &Mailbox)> {
        let to = self
            .to
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("to[{i}]"), m));
        let cc = self
            .cc
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("cc[{i}]"), m));
        to.chain(cc)
    }

    /// A one-line human summary for a confirmation prompt:
    /// `to John Smith <john@example.com>; cc b@example.com; subject "Q4 plan"; 412 bytes of body`.
    ///
    /// Safe to show even for a payload that failed validation: a name or address with
    /// anything but letters, digits, spaces and `.-_'+@` is shown quoted with escapes (so
    /// `"Boss <boss@corp.example>" <evil@example.net>` cannot pass for the boss, and
    /// line breaks or bidi controls cannot reshape the prompt), and so is the subject.
    pub fn summary(&self) -> String {
        let mut out = String::from("to ");
        push_mailboxes(&mut out, &self.to);
        if !self.cc.is_empty() {
            out.push_str("; cc ");
            push_mailboxes(&mut out, &self.cc);
        }
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "; subject {:?}; {} bytes of body",
            self.subject,
            self.body.len()
        );
        out
    }
}

fn push_mailboxes(out: &mut String, mailboxes: &[Mailbox]) {
    if mailboxes.is_empty() {
        out.push_str("nobody");
    }
    for (i, m) in mailboxes.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match m.display_name() {
            Some(name) => {
                let _ = write!(out, "{} <{}>", shown(name), shown(&m.email));
            }
            None => out.push_str(&shown(&m.email)),
        }
    }
}

/// The text itself if it is plain (letters, digits, space, `.-_'+@`), else quoted with
/// Rust's escapes, which also escape control and bidi formatting characters.
fn shown(text: &str) -> Cow<'_, str> {
    let plain =
        |c: char| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\'' | '+' | '@');
    if !text.is_empty() && text.chars().all(plain) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{text:?}"))
    }
}

impl Serialize for Mailbox {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = if self.name.is_some() { 2 } else { 1 };
        let mut s = serializer.serialize_struct("Mailbox", fields)?;
        if let Some(name) = &self.name {
            s.serialize_field("name", name)?;
        }
        s.serialize_field("email", &self.email)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Mailbox {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MailboxVisitor)
    }
}

/// Accepts `"a@b"` or `{"name"?: ..., "email": ...}` with no other key.
struct MailboxVisitor;

const MAILBOX_FIELDS: &[&str] = &["name", "email"];

/// The keys of a mailbox object, parsed once (closed, not string dispatch).
enum MailboxKey {
    Name,
    Email,
}

impl<'de> Deserialize<'de> for MailboxKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let key = Cow::<'de, str>::deserialize(deserializer)?;
        match key.as_ref() {
            "name" => Ok(MailboxKey::Name),
            "email" => Ok(MailboxKey::Email),
            other => Err(de::Error::unknown_field(other, MAILBOX_FIELDS)),
        }
    }
}

impl<'de> Visitor<'de> for MailboxVisitor {
    type Value = Mailbox;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an email address or an object {\"name\"?, \"email\"}")
    }

    fn visit_str<E: de::Error>(self, email: &str) -> Result<Mailbox, E> {
        Ok(Mailbox::new(email))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Mailbox, A::Error> {
        let mut name: Option<Option<String>> = None;
        let mut email: Option<String> = None;
        // A map has at most two accepted keys; the third key is a duplicate or unknown and
        // errors, so this loop runs at most three times.
        while let Some(key) = map.next_key::<MailboxKey>()? {
            match key {
                MailboxKey::Name if name.is_some() => {
                    return Err(de::Error::duplicate_field("name"));
                }
                MailboxKey::Name => name = Some(map.next_value()?),
                MailboxKey::Email if email.is_some() => {
                    return Err(de::Error::duplicate_field("email"));
                }
                MailboxKey::Email => email = Some(map.next_value()?),
            }
        }
        let email = email.ok_or_else(|| de::Error::missing_field("email"))?;
        Ok(Mailbox {
            name: name.flatten(),
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(json: &str) -> MailPayload {
        serde_json::from_str(json).unwrap()
    }

    fn valid() -> MailPayload {
        MailPayload {
            to: vec![Mailbox::named("John Smith", "john@example.com")],
            cc: vec![],
            subject: "Q4 plan".into(),
            body: "x".repeat(412),
        }
    }

    /// A change that makes `valid()` invalid.
    type Change = fn(&mut MailPayload);

    /// The message of `validate`'s error for `valid()` changed by `change`.
    fn error_of(change: Change) -> String {
        let mut p = valid();
        change(&mut p);
        p.validate().unwrap_err().to_string()
    }

    #[test]
    fn recipients_are_objects_or_bare_addresses() {
        let p = payload(
            r#"{"to": [{"name": "John Smith", "email": "john@example.com"}, "ann@example.com",
                       {"email": "bo@example.com"}, {"name": null, "email": "cy@example.com"}],
                "subject": "s", "body": "b"}"#,
        );
        assert_eq!(
            p.to,
            [
                Mailbox::named("John Smith", "john@example.com"),
                Mailbox::new("ann@example.com"),
                Mailbox::new("bo@example.com"),
                Mailbox::new("cy@example.com"),
            ]
        );
        assert!(p.cc.is_empty());
        let back: MailPayload = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn unknown_missing_and_duplicate_keys_are_refused() {
        for (json, expected) in [
            (
                r#"{"to": [], "subject": "s", "body": "b", "bcc": []}"#,
                "unknown field `bcc`",
            ),
            (
                r#"{"to": [{"email": "a@b.c", "x": 1}], "subject": "s", "body": "b"}"#,
                "unknown field `x`",
            ),
            (
                r#"{"to": [{"name": "A"}], "subject": "s", "body": "b"}"#,
                "missing field `email`",
            ),
            (
                r#"{"to": [{"email": "a@b.c", "email": "d@e.f"}], "subject": "s", "body": "b"}"#,
                "duplicate field `email`",
            ),
            (
                r#"{"to": [3], "subject": "s", "body": "b"}"#,
                "an email address or an object",
            ),
            (
                r#"{"to": ["a@b.c"], "body": "b"}"#,
                "missing field `subject`",
            ),
        ] {
            let err = serde_json::from_str::<MailPayload>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn a_valid_payload_passes() {
        valid().validate().unwrap();
        let mut p = valid();
        p.to = vec![Mailbox::new("a@example.com"); RECIPIENTS_MAX / 2];
        p.cc = vec![Mailbox::named("", "b@example.com"); RECIPIENTS_MAX / 2];
        p.subject = "é".repeat(SUBJECT_BYTES_MAX / 2);
        p.body = "\n".repeat(BODY_BYTES_MAX);
        p.validate().unwrap();
    }

    #[test]
    fn each_validation_error_names_its_field() {
        let cases: Vec<(Change, String)> = vec![
            (
                |p| p.to.clear(),
                "to: at least one recipient is needed".into(),
            ),
            (
                |p| p.cc = vec![Mailbox::new("a@example.com"); RECIPIENTS_MAX],
                format!("to+cc: 51 recipients, at most {RECIPIENTS_MAX}"),
            ),
            (
                |p| p.to.push(Mailbox::new("bob@")),
                r#"to[1]: "bob@" is not an email address"#.into(),
            ),
            (
                |p| p.cc.push(Mailbox::new("no-at-sign")),
                r#"cc[0]: "no-at-sign" is not an email address"#.into(),
            ),
            (
                |p| p.to[0].email = format!("{}@example.com", "a".repeat(250)),
                format!(
                    r#"to[0]: "{}@example.com" is not an email address"#,
                    "a".repeat(250)
                ),
            ),
            (
                |p| p.to[0].email = "a@exa\nmple.com".into(),
                r#"to[0]: "a@exa\nmple.com" is not an email address"#.into(),
            ),
            (
                |p| p.to[0].name = Some("John\r\nBcc: x@evil.example".into()),
                "to[0].name: contains a line break (CR or LF)".into(),
            ),
            (
                |p| p.to[0].name = Some("n".repeat(NAME_BYTES_MAX + 1)),
                format!("to[0].name: 257 bytes, at most {NAME_BYTES_MAX}"),
            ),
            (|p| p.subject.clear(), "subject: must not be empty".into()),
            (
                |p| p.subject = "s".repeat(SUBJECT_BYTES_MAX + 1),
                format!("subject: 513 bytes, at most {SUBJECT_BYTES_MAX}"),
            ),
            (
                |p| p.subject = "Hi\r\nBcc: everyone@example.com".into(),
                "subject: contains a line break (CR or LF)".into(),
            ),
            (
                |p| p.subject = "Hi\nthere".into(),
                "subject: contains a line break (CR or LF)".into(),
            ),
            (
                |p| p.subject = "bell\u{7}".into(),
                r"subject: contains the control character '\u{7}'".into(),
            ),
            (
                |p| p.body = "b".repeat(BODY_BYTES_MAX + 1),
                format!("body: 1048577 bytes, at most {BODY_BYTES_MAX}"),
            ),
        ];
        for (change, expected) in cases {
            assert_eq!(error_of(change), expected);
        }
    }

    #[test]
    fn address_errors_keep_their_reason() {
        let mut p = valid();
        p.to[0].email = "bob@".into();
        let err = p.validate().unwrap_err();
        assert!(matches!(
            &err,
            MailError::Address { field, value, reason: AddressReason::Syntax(_) }
                if field == "to[0]" && value == "bob@"
        ));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn summary_is_one_line() {
        assert_eq!(
            valid().summary(),
            r#"to John Smith <john@example.com>; subject "Q4 plan"; 412 bytes of body"#
        );
        let p = payload(
            r#"{"to": ["ann@example.com", {"name": "", "email": "bo@example.com"}],
                "cc": [{"name": "Zoë O'Neil", "email": "z@example.com"}],
                "subject": "Say \"hi\"", "body": "héllo"}"#,
        );
        assert_eq!(
            p.summary(),
            r#"to ann@example.com, bo@example.com; cc Zoë O'Neil <z@example.com>; subject "Say \"hi\""; 6 bytes of body"#
        );
    }

    #[test]
    fn summary_cannot_be_spoofed() {
        let p = MailPayload {
            to: vec![Mailbox::named(
                "Boss <boss@corp.example>",
                "evil@example.net",
            )],
            cc: vec![],
            subject: "pay\ninvoice \u{202e}fdp.exe".into(),
            body: String::new(),
        };
        let s = p.summary();
        assert!(!s.contains('\n') && !s.contains('\u{202e}'), "{s}");
        assert_eq!(
            s,
            r#"to "Boss <boss@corp.example>" <evil@example.net>; subject "pay\ninvoice \u{202e}fdp.exe"; 0 bytes of body"#
        );
        let nobody = MailPayload { to: vec![], ..p };
        assert!(nobody.summary().starts_with("to nobody; subject"));
    }
}
