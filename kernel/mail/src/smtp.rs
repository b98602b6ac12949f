//! [`send_smtp`]: one blocking SMTP session per message through lettre's connection
//! (no pool), each step bounded by what is left of `timeout_ms`, each failure typed by
//! the step it happened in.

use std::io;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use serde::Deserialize;

use crate::MESSAGE_BYTES_MAX;
use crate::error::{MailError, SmtpStep};
use crate::payload::{MailPayload, Mailbox};

/// `timeout_ms` when the config does not say.
pub const SMTP_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// The largest `timeout_ms` accepted: a stuck server must not hold an effect for longer.
pub const SMTP_TIMEOUT_MS_MAX: u64 = 300_000;
/// Server text kept in a [`SmtpReceipt`] or a refusal error; longer text is cut.
pub const SMTP_RESPONSE_BYTES_MAX: usize = 1024;
/// A DNS name is at most 253 bytes.
const HOST_BYTES_MAX: usize = 253;
const USERNAME_BYTES_MAX: usize = 256;
const PASSWORD_ENV_BYTES_MAX: usize = 128;

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain TCP, no TLS even if the server offers STARTTLS. For a relay on loopback or a
    /// trusted network; credentials are refused with it.
    None,
    /// Plain TCP, then STARTTLS, which the server must offer (usually port 587).
    Starttls,
    /// TLS from the first byte, "implicit TLS" (usually port 465).
    Tls,
}

/// Where and how `mail.send` reaches an SMTP server (read from the kernel's YAML config).
///
/// ```yaml
/// host: smtp.example.com
/// port: 587
/// security: starttls        # none | starttls | tls
/// username: runloop@example.com
/// password_env: RUNLOOP_SMTP_PASSWORD   # the NAME of the variable, not the password
/// timeout_ms: 10000         # default 10000, at most 300000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    /// The name of the environment variable that holds the password, read at each send.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    SMTP_TIMEOUT_MS_DEFAULT
}

impl SmtpConfig {
    /// Checks the config without touching the network or the environment: a host name of
    /// 1..=253 bytes without spaces or control characters, a non-zero port, `timeout_ms`
    /// in 1..=[`SMTP_TIMEOUT_MS_MAX`], `username` and `password_env` both or neither, a
    /// variable name of ASCII letters, digits and `_`, and no credentials over
    /// `security: none` (the password would cross the network in clear).
    pub fn validate(&self) -> Result<(), MailError> {
        let refuse = |reason| Err(MailError::SmtpConfig { reason });
        let host_ok = |c: char| !c.is_whitespace() && !c.is_control() && c != '/';
        if self.host.is_empty()
            || self.host.len() > HOST_BYTES_MAX
            || !self.host.chars().all(host_ok)
        {
            return refuse("host must be a name or address of 1 to 253 bytes without spaces");
        }
        if self.port == 0 {
            return refuse("port must not be 0");
        }
        if self.timeout_ms == 0 || self.timeout_ms > SMTP_TIMEOUT_MS_MAX {
            return refuse("timeout_ms must be between 1 and 300000");
        }
        match (&self.username, &self.password_env) {
            (None, None) => Ok(()),
            (Some(_), None) | (None, Some(_)) => refuse("username and password_env go together"),
            (Some(_), Some(_)) if self.security == SmtpSecurity::None => {
                refuse("username needs security starttls or tls (the password would go in clear)")
            }
            (Some(user), Some(var)) => {
                if user.is_empty()
                    || user.len() > USERNAME_BYTES_MAX
                    || user.chars().any(char::is_control)
                {
                    return refuse("username must be 1 to 256 bytes without control characters");
                }
                let var_ok = |c: char| c.is_ascii_alphanumeric() || c == '_';
                if var.is_empty() || var.len() > PASSWORD_ENV_BYTES_MAX || !var.chars().all(var_ok)
                {
                    return refuse(
                        "password_env must name a variable: ASCII letters, digits and _",
                    );
                }
                Ok(())
            }
        }
    }

    /// The credentials, reading the password from the environment now.
    fn credentials(&self) -> Result<Option<Credentials>, MailError> {
        let (Some(user), Some(var)) = (&self.username, &self.password_env) else {
            return Ok(None);
        };
        let password =
            std::env::var(var).map_err(|_| MailError::SmtpPassword { name: var.clone() })?;
        Ok(Some(Credentials::new(user.clone(), password)))
    }
}

/// What the server said when it accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReceipt {
    /// The final reply to the message's DATA: its code and text lines joined by spaces
    /// (`250 2.0.0 Ok: queued as 4F1A2`), at most [`SMTP_RESPONSE_BYTES_MAX`] bytes.
    pub response: String,
}

/// Sends `message` (as [`crate::render`] made it for `payload`) over SMTP: envelope sender
/// `from`, one RCPT for every distinct `to` and `cc` address. Blocking; the whole session
/// gets `cfg.timeout_ms`: connect, STARTTLS, AUTH and the send each get what is left of
/// it as their socket timeouts (so a server trickling bytes can stretch one step's
/// reads, each within the remaining time, but no step starts after the deadline).
///
/// AUTH uses PLAIN or LOGIN, whichever the server offers first in that order. The EHLO name
/// is `[127.0.0.1]` (lettre's default without a host name lookup).
pub fn send_smtp(
    cfg: &SmtpConfig,
    from: &Mailbox,
    payload: &MailPayload,
    message: &[u8],
) -> Result<SmtpReceipt, MailError> {
    cfg.validate()?;
    payload.validate()?;
    let sender = from.check("from")?;
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(MailError::MessageTooLarge {
            bytes: message.len(),
        });
    }
    let envelope = envelope(sender, payload)?;
    let credentials = cfg.credentials()?;
    let session = Session {
        cfg,
        deadline: Instant::now() + Duration::from_millis(cfg.timeout_ms),
    };

    let tls = match cfg.security {
        SmtpSecurity::None => None,
        SmtpSecurity::Starttls | SmtpSecurity::Tls => Some(
            TlsParameters::builder(cfg.host.clone())
                .build_rustls()
                .map_err(|e| session.classify(SmtpStep::Connect, e))?,
        ),
    };
    let implicit_tls = tls.as_ref().filter(|_| cfg.security == SmtpSecurity::Tls);
    let hello = ClientId::default();
    let mut conn = SmtpConnection::connect(
        (cfg.host.as_str(), cfg.port),
        Some(Duration::from_millis(cfg.timeout_ms)),
        &hello,
        implicit_tls,
        None,
    )
    .map_err(|e| session.classify(SmtpStep::Connect, e))?;

    let result = session.run(
        &mut conn,
        tls.as_ref(),
        &hello,
        credentials.as_ref(),
        &envelope,
        message,
    );
    match result {
        Ok(response) => {
            // The message is accepted; a failed QUIT changes nothing.
            let _ = conn.quit();
            Ok(SmtpReceipt {
                response: response_text(&response),
            })
        }
        Err(e) => {
            conn.abort();
            Err(e)
        }
    }
}

/// The envelope: `from`, then every distinct recipient in `to`, `cc` order.
fn envelope(sender: lettre::Address, payload: &MailPayload) -> Result<Envelope, MailError> {
    let mut rcpt: Vec<lettre::Address> = Vec::with_capacity(payload.to.len() + payload.cc.len());
    for (field, mailbox) in payload.recipients() {
        let address = mailbox.check(&field)?;
        if !rcpt.contains(&address) {
            rcpt.push(address);
        }
    }
    Envelope::new(Some(sender), rcpt).map_err(|source| MailError::Build { source })
}

/// One session's configuration and deadline.
struct Session<'a> {
    cfg: &'a SmtpConfig,
    deadline: Instant,
}

impl Session<'_> {
    /// STARTTLS (if configured), AUTH (if configured) and the send, on a connected session.
    fn run(
        &self,
        conn: &mut SmtpConnection,
        tls: Option<&TlsParameters>,
        hello: &ClientId,
        credentials: Option<&Credentials>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, MailError> {
        if let (SmtpSecurity::Starttls, Some(tls)) = (self.cfg.security, tls) {
            self.arm(conn, SmtpStep::Starttls)?;
            conn.starttls(tls, hello)
                .map_err(|e| self.classify(SmtpStep::Starttls, e))?;
        }
        if let Some(credentials) = credentials {
            self.arm(conn, SmtpStep::Auth)?;
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .map_err(|e| self.classify(SmtpStep::Auth, e))?;
        }
        self.arm(conn, SmtpStep::Send)?;
        conn.send(envelope, message)
            .map_err(|e| self.classify(SmtpStep::Send, e))
    }

    /// Sets the socket timeouts to what is left before the deadline; none left is a timeout.
    fn arm(&self, conn: &mut SmtpConnection, step: SmtpStep) -> Result<(), MailError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(MailError::SmtpTimeout {
                step,
                timeout_ms: self.cfg.timeout_ms,
            });
        }
        conn.set_timeout(Some(left))
            .map_err(|source| MailError::SmtpSocket { step, source })
    }

    /// Types lettre's error: a 4xx/5xx reply, a timeout, a TLS failure (any failure of the
    /// STARTTLS step counts), a connect failure, or another failure of the session.
    fn classify(&self, step: SmtpStep, e: SmtpError) -> MailError {
        if let Some(code) = e.status() {
            let text = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            return MailError::SmtpRefused {
                step,
                code: u16::from(code),
                text: cut(text),
            };
        }
        let io = io_error(&e);
        // Unix socket timeouts surface as WouldBlock (EAGAIN), connect timeouts as TimedOut.
        if e.is_timeout()
            || io.is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                )
            })
        {
            return MailError::SmtpTimeout {
                step,
                timeout_ms: self.cfg.timeout_ms,
            };
        }
        let rustls_failed = io
            .and_then(io::Error::get_ref)
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if e.is_tls() || rustls_failed || step == SmtpStep::Starttls {
            return MailError::SmtpTls { step, source: e };
        }
        if step == SmtpStep::Connect {
            return MailError::SmtpConnect {
                host: self.cfg.host.clone(),
                port: self.cfg.port,
                source: e,
            };
        }
        MailError::SmtpSession { step, source: e }
    }
}

/// The I/O error under lettre's error, if there is one.
fn io_error(e: &SmtpError) -> Option<&io::Error> {
    std::error::Error::source(e)?.downcast_ref::<io::Error>()
}

/// `250 2.0.0 Ok` from a reply, cut to [`SMTP_RESPONSE_BYTES_MAX`].
fn response_text(response: &Response) -> String {
    let mut text = u16::from(response.code()).to_string();
    for line in response.message() {
        text.push(' ');
        text.push_str(line);
    }
    cut(text)
}

/// Cuts server text to [`SMTP_RESPONSE_BYTES_MAX`] bytes on a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > SMTP_RESPONSE_BYTES_MAX {
        let mut end = SMTP_RESPONSE_BYTES_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> SmtpConfig {
        serde_json::from_str(json).unwrap()
    }

    fn base() -> SmtpConfig {
        config(r#"{"host": "smtp.example.com", "port": 587, "security": "starttls"}"#)
    }

    #[test]
    fn config_shape() {
        let c = base();
        assert_eq!(c.security, SmtpSecurity::Starttls);
        assert_eq!(
            (c.username, c.password_env, c.timeout_ms),
            (None, None, SMTP_TIMEOUT_MS_DEFAULT)
        );
        let c = config(
            r#"{"host": "h", "port": 465, "security": "tls", "username": "u",
                "password_env": "RUNLOOP_SMTP_PASSWORD", "timeout_ms": 500}"#,
        );
        assert_eq!(c.security, SmtpSecurity::Tls);
        assert_eq!(c.password_env.as_deref(), Some("RUNLOOP_SMTP_PASSWORD"));
        assert_eq!(
            config(r#"{"host": "h", "port": 25, "security": "none"}"#).security,
            SmtpSecurity::None
        );
        for (json, expected) in [
            (
                r#"{"host": "h", "port": 25, "security": "ssl"}"#,
                "unknown variant `ssl`",
            ),
            (
                r#"{"host": "h", "port": 25, "security": "none", "password": "x"}"#,
                "unknown field `password`",
            ),
            (
                r#"{"host": "h", "security": "none"}"#,
                "missing field `port`",
            ),
        ] {
            let err = serde_json::from_str::<SmtpConfig>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn config_validation() {
        base().validate().unwrap();
        type Change = fn(&mut SmtpConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.host = String::new(), "host must be"),
            (|c| c.host = "smtp example".into(), "host must be"),
            (|c| c.port = 0, "port must not be 0"),
            (|c| c.timeout_ms = 0, "timeout_ms must be"),
            (
                |c| c.timeout_ms = SMTP_TIMEOUT_MS_MAX + 1,
                "timeout_ms must be",
            ),
            (
                |c| c.username = Some("u".into()),
                "username and password_env go together",
            ),
            (
                |c| c.password_env = Some("P".into()),
                "username and password_env go together",
            ),
            (
                |c| {
                    c.security = SmtpSecurity::None;
                    c.username = Some("u".into());
                    c.password_env = Some("P".into());
                },
                "username needs security starttls or tls",
            ),
            (
                |c| {
                    c.username = Some("u".into());
                    c.password_env = Some("NOT A NAME".into());
                },
                "password_env must name a variable",
            ),
        ];
        for (change, expected) in cases {
            let mut c = base();
            change(&mut c);
            let err = c.validate().unwrap_err();
            assert!(
                matches!(&err, MailError::SmtpConfig { reason } if reason.starts_with(expected)),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_password_variable_is_named_not_shown() {
        let mut c = base();
        c.username = Some("u".into());
        c.password_env = Some("RUNLOOP_MAIL_TEST_UNSET_PASSWORD".into());
        let err = c.credentials().unwrap_err();
        assert_eq!(
            err.to_string(),
            "smtp password: environment variable RUNLOOP_MAIL_TEST_UNSET_PASSWORD is unset or not valid UTF-8"
        );
        assert!(base().credentials().unwrap().is_none());
    }

    #[test]
    fn server_text_is_cut_on_a_char_boundary() {
        assert_eq!(cut("250 ok".into()), "250 ok");
        let long = "é".repeat(SMTP_RESPONSE_BYTES_MAX);
        let short = cut(long);
        assert!(
            short.len() <= SMTP_RESPONSE_BYTES_MAX && short.len() > SMTP_RESPONSE_BYTES_MAX - 2
        );
    }
}
