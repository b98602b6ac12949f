//! The `mail.send` effect's executors: validate what an agent asks to send, render it as
//! an RFC 5322 message, and either deliver it to a local Maildir outbox (the default) or
//! send it over SMTP (when the kernel is configured with a server). Blocking, no async.
//!
//! Boundary: no async, no actors, no clock, no RNG, no config files. The caller (the
//! kernel's effect executor) passes the date, the Message-ID and the configuration in, and
//! owns capabilities, confirmation and the effects journal; nothing here knows about runs.
//!
//! # The flow
//!
//! 1. The agent's JSON becomes a [`MailPayload`] (serde, unknown keys refused):
//!    `{"to": [{"name": "John Smith", "email": "john@example.com"}, "ann@example.com"],
//!    "cc"?: [...], "subject": "Q4 plan", "body": "..."}`. Each recipient is an object
//!    `{name?, email}` or a bare address.
//! 2. [`MailPayload::validate`] checks the limits below and every address (lettre's
//!    parser); errors name the field: `to[1]: "bob@" is not an email address`.
//! 3. [`MailPayload::summary`] is the line a confirmation prompt shows:
//!    `to John Smith <john@example.com>; subject "Q4 plan"; 412 bytes of body`.
//! 4. [`render`] formats the message with lettre's builder, deterministically: the kernel
//!    passes `From`, the Message-ID and the date (ms since the epoch) in, so a replayed run
//!    renders the same bytes. The body is `text/plain; charset=utf-8` with CRLF line ends.
//! 5. Then one of:
//!    - [`Maildir::deliver`] writes it to `<root>/tmp/`, syncs it and renames it into
//!      `<root>/new/`;
//!    - [`send_smtp`] sends it to the configured server.
//!
//! # Message-IDs and the Maildir naming rule
//!
//! A Message-ID is `<left@right>`, at most [`MESSAGE_ID_BYTES_MAX`] bytes, where `left` and
//! `right` are RFC 5322 dot-atoms (runs of letters, digits and ``!#$%&'*+-=?^_`{|}~``
//! joined by single dots; `/` is excluded). [`render`] and [`Maildir::deliver`] refuse
//! anything else, so the id can be a file name as it is: the message `<x.1@runloop>` is
//! the file `new/x.1@runloop`. It has no `/`, no `:` (Maildir's flag separator), no
//! leading dot, and a reader that moves it to `cur/` keeps that name (plus `:2,FLAGS`).
//!
//! Delivery is idempotent per Message-ID: if `new/<name>` or `cur/<name>[:2,...]` exists,
//! [`Maildir::deliver`] returns its path and writes nothing, so a retried effect does not
//! mail twice. The temporary file is `tmp/<name>.<pid>.<seq>` (unique, so two deliveries at
//! once never share it); `tmp/` is empty after every delivery. Directories are created
//! 0700 and files 0600. The file holds the message byte for byte as rendered (CRLF line
//! ends, as on the wire).
//!
//! # SMTP security
//!
//! [`SmtpConfig::security`] is a closed choice ([`SmtpSecurity`]):
//! - `none`: plain TCP, never upgraded; for a relay on loopback or a trusted network.
//!   Credentials are refused with it.
//! - `starttls`: plain TCP then STARTTLS, which the server must offer (port 587).
//! - `tls`: implicit TLS from the first byte (port 465).
//!
//! TLS is rustls 0.23 with the ring provider and the webpki-roots (Mozilla) trust store,
//! the same crates reqwest already brings into the workspace, so TLS costs no new crate:
//! lettre 0.11 itself and six small crates (`email-encoding`, `email_address`, `httpdate`,
//! `mime`, `nom`, `quoted_printable`) are all this crate adds. No OpenSSL, no system trust
//! store, no client certificates, no custom CA (a server with a private CA needs that
//! added here first).
//!
//! The password is never in the config: `password_env` names the environment variable
//! that holds it, read at each send. The whole session is bounded by `timeout_ms`
//! (default [`SMTP_TIMEOUT_MS_DEFAULT`], at most [`SMTP_TIMEOUT_MS_MAX`]); failures are
//! typed by step ([`SmtpStep`]): connect, refused (with the server's code and text),
//! timeout, TLS, or another session failure.
//!
//! # Limits
//!
//! | what | limit |
//! |---|---|
//! | recipients in `to` + `cc` | 1..=[`RECIPIENTS_MAX`] |
//! | one address | [`ADDRESS_BYTES_MAX`] bytes |
//! | one display name | [`NAME_BYTES_MAX`] bytes, one line, no control characters |
//! | subject | 1..=[`SUBJECT_BYTES_MAX`] bytes, one line (no CR/LF), no control characters |
//! | body | [`BODY_BYTES_MAX`] bytes |
//! | Message-ID | [`MESSAGE_ID_BYTES_MAX`] bytes |
//! | rendered message (`deliver`, `send_smtp`) | [`MESSAGE_BYTES_MAX`] bytes |
//! | entries in `new/` or `cur/` | [`MAILDIR_ENTRIES_MAX`] |
//! | SMTP session | `timeout_ms` ≤ [`SMTP_TIMEOUT_MS_MAX`] ms |
//! | server text kept | [`SMTP_RESPONSE_BYTES_MAX`] bytes |
//!
//! # Tests
//!
//! Unit tests run everywhere. `tests/smtp.rs` talks to a real SMTP server (aiosmtpd on
//! loopback, started by `packaging/scripts/smtp-server.sh`); it fails, not skips, until
//! `packaging/scripts/smtp-server.sh install` has run (`packaging/scripts/test.sh` does).

mod error;
mod maildir;
mod payload;
mod render;
mod smtp;

pub use error::{AddressReason, MailError, SmtpStep, TextProblem};
pub use maildir::Maildir;
pub use payload::{MailPayload, Mailbox};
pub use render::{DATE_MS_MAX, render};
pub use smtp::{
    SMTP_RESPONSE_BYTES_MAX, SMTP_TIMEOUT_MS_DEFAULT, SMTP_TIMEOUT_MS_MAX, SmtpConfig, SmtpReceipt,
    SmtpSecurity, send_smtp,
};

/// Recipients in `to` and `cc` together.
pub const RECIPIENTS_MAX: usize = 50;
/// One address; RFC 5321 caps a path at 256 bytes including its angle brackets.
pub const ADDRESS_BYTES_MAX: usize = 254;
/// One display name.
pub const NAME_BYTES_MAX: usize = 256;
/// The subject, before any RFC 2047 encoding.
pub const SUBJECT_BYTES_MAX: usize = 512;
/// The body as the agent wrote it (1 MiB).
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// A Message-ID, angle brackets included.
pub const MESSAGE_ID_BYTES_MAX: usize = 200;
/// A rendered message; what any valid payload renders to stays under it (see `render`).
pub const MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Entries read from one Maildir directory before giving up: the outbox is not a mail
/// store, and an unbounded listing would be an unbounded loop.
pub const MAILDIR_ENTRIES_MAX: usize = 100_000;
