//! [`MailError`]: every way validating, rendering, delivering or sending a message fails,
//! each variant naming the field or step that failed.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::{
    ADDRESS_BYTES_MAX, BODY_BYTES_MAX, MAILDIR_ENTRIES_MAX, MESSAGE_BYTES_MAX, RECIPIENTS_MAX,
};

/// Why a message could not be validated, rendered, delivered or sent.
///
/// The validation variants (the first group) are the agent's fault and safe to show it;
/// the rest are the kernel's configuration or the world (disk, network, server).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    // --- The payload (agent input). ---
    /// `to` and `cc` are both empty.
    #[error("to: at least one recipient is needed")]
    NoRecipients,
    /// More than [`RECIPIENTS_MAX`] addresses in `to` and `cc` together.
    #[error("to+cc: {count} recipients, at most {RECIPIENTS_MAX}")]
    TooManyRecipients { count: usize },
    /// An address lettre does not accept (or one longer than [`ADDRESS_BYTES_MAX`]).
    /// `field` is `to[1]`, `cc[0]` or `from`.
    #[error("{field}: {value:?} is not an email address")]
    Address {
        field: String,
        value: String,
        #[source]
        reason: AddressReason,
    },
    /// A display name with a control character or longer than [`crate::NAME_BYTES_MAX`].
    /// `field` is `to[1].name`, `cc[0].name` or `from.name`.
    #[error("{field}: {reason}")]
    Name { field: String, reason: TextProblem },
    /// A subject that is empty, too long or has a line break or control character.
    #[error("subject: {reason}")]
    Subject { reason: TextProblem },
    /// A body longer than [`BODY_BYTES_MAX`].
    #[error("body: {bytes} bytes, at most {BODY_BYTES_MAX}")]
    BodyTooLong { bytes: usize },

    // --- Rendering (the kernel's inputs). ---
    /// A Message-ID that is not `<left@right>` in the accepted alphabet (see the crate doc).
    #[error("message id {value:?}: {reason}")]
    MessageId { value: String, reason: &'static str },
    /// A date past what the Date header can express (the year 9999).
    #[error("date {date_ms} ms since the epoch is past the year 9999")]
    Date { date_ms: u64 },
    /// lettre refused to build the message (validation should have caught it first).
    #[error("build the message: {source}")]
    Build {
        #[source]
        source: lettre::error::Error,
    },
    /// A message larger than [`MESSAGE_BYTES_MAX`] handed to `deliver` or `send_smtp`.
    #[error("message is {bytes} bytes, at most {MESSAGE_BYTES_MAX}")]
    MessageTooLarge { bytes: usize },

    // --- Maildir. ---
    /// Creating one of the Maildir's directories failed.
    #[error("create maildir directory {path}: {source}")]
    MaildirCreate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A path the Maildir needs as a directory is something else.
    #[error("maildir {path} is not a directory")]
    MaildirNotDir { path: PathBuf },
    /// Writing (or syncing) the message into `tmp/` failed.
    #[error("write {path}: {source}")]
    MaildirWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Moving the message from `tmp/` into `new/` failed.
    #[error("rename {from} to {to}: {source}")]
    MaildirRename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Listing or inspecting `new/` or `cur/` failed.
    #[error("read maildir directory {path}: {source}")]
    MaildirRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `new/` or `cur/` holds more than [`MAILDIR_ENTRIES_MAX`] entries.
    #[error("maildir directory {path} has more than {MAILDIR_ENTRIES_MAX} entries")]
    MaildirFull { path: PathBuf },

    // --- SMTP. ---
    /// The SMTP configuration is unusable.
    #[error("smtp config: {reason}")]
    SmtpConfig { reason: &'static str },
    /// The environment variable named by `password_env` is unset or not UTF-8.
    #[error("smtp password: environment variable {name} is unset or not valid UTF-8")]
    SmtpPassword { name: String },
    /// The TCP connection, greeting or EHLO failed (not a refusal, timeout or TLS failure).
    #[error("smtp connect {host}:{port}: {source}")]
    SmtpConnect {
        host: String,
        port: u16,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// The server answered a step with a 4xx (transient) or 5xx (permanent) reply.
    #[error("smtp {step}: the server refused with {code} {text}")]
    SmtpRefused {
        step: SmtpStep,
        code: u16,
        text: String,
    },
    /// A step did not finish within the configured `timeout_ms`.
    #[error("smtp {step}: timed out (timeout {timeout_ms} ms)")]
    SmtpTimeout { step: SmtpStep, timeout_ms: u64 },
    /// The TLS handshake failed, or STARTTLS was required and the server does not offer it.
    #[error("smtp {step}: tls: {source}")]
    SmtpTls {
        step: SmtpStep,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// Setting the socket timeout before a step failed.
    #[error("smtp {step}: set the socket timeout: {source}")]
    SmtpSocket {
        step: SmtpStep,
        #[source]
        source: io::Error,
    },
    /// Any other failure once connected: the connection broke, a reply did not parse, the
    /// server lacks a needed extension (SMTPUTF8, 8BITMIME) or an AUTH mechanism.
    #[error("smtp {step}: {source}")]
    SmtpSession {
        step: SmtpStep,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// What is wrong with a line of text (a subject or a display name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    #[error("must not be empty")]
    Empty,
    #[error("{bytes} bytes, at most {max}")]
    TooLong { bytes: usize, max: usize },
    /// CR or LF: a line break would end the header and start another (header injection).
    #[error("contains a line break (CR or LF)")]
    LineBreak,
    /// Any other control character (NUL, ESC, DEL, ...).
    #[error("contains the control character {0:?}")]
    Control(char),
}

/// Why an address was refused.
#[derive(Debug, thiserror::Error)]
pub enum AddressReason {
    #[error("{bytes} bytes, at most {ADDRESS_BYTES_MAX}")]
    TooLong { bytes: usize },
    #[error("contains the control character {0:?}")]
    Control(char),
    #[error(transparent)]
    Syntax(#[from] lettre::address::AddressError),
}

/// The step of an SMTP exchange an error happened in, for [`MailError`]'s SMTP variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpStep {
    /// TCP connect, the TLS handshake for `security: tls`, the greeting and EHLO.
    Connect,
    /// STARTTLS, the handshake and the second EHLO (`security: starttls`).
    Starttls,
    /// AUTH (only with `username`).
    Auth,
    /// MAIL FROM, RCPT TO for every recipient, DATA and the message.
    Send,
}

impl fmt::Display for SmtpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpStep::Connect => "connect",
            SmtpStep::Starttls => "starttls",
            SmtpStep::Auth => "auth",
            SmtpStep::Send => "send",
        })
    }
}
