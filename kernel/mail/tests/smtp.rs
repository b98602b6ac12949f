//! `send_smtp` against a real SMTP server: aiosmtpd on loopback, started and stopped by
//! `packaging/scripts/smtp-server.sh`, storing what it accepts in a Maildir we then read.
//! Without `packaging/scripts/smtp-server.sh install` these tests fail (they never skip).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runloop_mail::{
    MailError, MailPayload, Mailbox, Maildir, SmtpConfig, SmtpSecurity, SmtpStep, render, send_smtp,
};

/// 2023-11-14T22:13:20Z.
const DATE_MS: u64 = 1_700_000_000_000;
/// Failures against loopback are immediate; this only bounds a broken test.
const QUICK_MS: u128 = 2_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    repo_root().join("packaging/scripts/smtp-server.sh")
}

/// One aiosmtpd process, stopped by its pid when dropped.
struct Server {
    pid: u32,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server that refuses RCPT TO for the `refused` addresses.
    fn start(refused: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("received");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&maildir)
            .env("RUNLOOP_SMTP_REFUSE_RCPT", refused.join(","))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(3) => panic!(
                "the SMTP test server is not installed: run `packaging/scripts/smtp-server.sh \
                 install` (packaging/scripts/test.sh does)\n{stderr}"
            ),
            _ => panic!("smtp-server.sh start failed ({}): {stderr}", out.status),
        }
        let stdout = String::from_utf8(out.stdout).unwrap();
        let field = |key: &str| -> String {
            stdout
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {stdout:?}"))
                .to_owned()
        };
        Server {
            pid: field("pid=").parse().unwrap(),
            port: field("port=").parse().unwrap(),
            maildir,
            _dir: dir,
        }
    }

    fn config(&self, security: SmtpSecurity) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            security,
            username: None,
            password_env: None,
            timeout_ms: 5_000,
        }
    }

    /// Every message the server stored, as (headers, body) with LF line ends.
    fn received(&self) -> Vec<(Vec<(String, String)>, String)> {
        let maildir = Maildir::open(&self.maildir).unwrap();
        maildir
            .messages()
            .unwrap()
            .iter()
            .map(|path| parse(&std::fs::read_to_string(path).unwrap()))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.pid.to_string())
            .status();
    }
}

/// Splits a stored message into unfolded headers and the body.
fn parse(message: &str) -> (Vec<(String, String)>, String) {
    let message = message.replace("\r\n", "\n");
    let (head, body) = message.split_once("\n\n").unwrap();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        match headers.last_mut() {
            Some((_, value)) if line.starts_with([' ', '\t']) => value.push_str(line),
            _ => {
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
    }
    (headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    let found: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(found.len(), 1, "{name} in {headers:?}");
    found[0]
}

fn from() -> Mailbox {
    Mailbox::named("Runloop", "agent@runloop.test")
}

fn payload(to: &[&str]) -> MailPayload {
    MailPayload {
        to: to.iter().map(|a| Mailbox::new(*a)).collect(),
        cc: vec![],
        subject: "test".into(),
        body: "test\n".into(),
    }
}

#[test]
fn a_rendered_message_reaches_a_real_server_once() {
    let server = Server::start(&[]);
    // A line holding only "." would end DATA early unless it is dot-stuffed.
    let body = "Hello John,\nthe plan is attached.\n.\nThe line above is a single dot.\n";
    let payload = MailPayload {
        to: vec![
            Mailbox::named("John Smith", "john@example.com"),
            Mailbox::new("ann@example.com"),
        ],
        cc: vec![Mailbox::new("carl@example.com")],
        subject: "Q4 plan".into(),
        body: body.into(),
    };
    let message = render(&payload, &from(), "<smtp.1@runloop.test>", DATE_MS).unwrap();

    let receipt = send_smtp(
        &server.config(SmtpSecurity::None),
        &from(),
        &payload,
        &message,
    )
    .unwrap();
    assert!(receipt.response.starts_with("250"), "{receipt:?}");

    let received = server.received();
    assert_eq!(received.len(), 1, "exactly one message stored");
    let (headers, stored_body) = &received[0];
    assert_eq!(
        header(headers, "To"),
        r#""John Smith" <john@example.com>, ann@example.com"#
    );
    assert_eq!(header(headers, "Cc"), "carl@example.com");
    assert_eq!(header(headers, "Subject"), "Q4 plan");
    assert_eq!(header(headers, "Message-ID"), "<smtp.1@runloop.test>");
    assert_eq!(header(headers, "Date"), "Tue, 14 Nov 2023 22:13:20 +0000");
    assert_eq!(header(headers, "From"), "Runloop <agent@runloop.test>");
    // The envelope, as aiosmtpd saw it: every to and cc address.
    assert_eq!(header(headers, "X-MailFrom"), "agent@runloop.test");
    assert_eq!(
        header(headers, "X-RcptTo"),
        "john@example.com, ann@example.com, carl@example.com"
    );
    // The dot line arrived intact (dot-stuffed on the wire). The two extra line breaks are
    // lettre's: the rendered body part ends with one more CRLF, and its DATA writes a CRLF
    // before the closing dot, which the server keeps.
    assert_eq!(stored_body, &format!("{body}\n\n"));
}

#[test]
fn a_closed_port_is_a_connect_error_quickly() {
    // Bind a free loopback port, then close it: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password_env: None,
        timeout_ms: 5_000,
    };
    let p = payload(&["a@example.com"]);
    let message = render(&p, &from(), "<closed@runloop.test>", DATE_MS).unwrap();
    let started = Instant::now();
    let err = send_smtp(&cfg, &from(), &p, &message).unwrap_err();
    assert!(
        started.elapsed().as_millis() < QUICK_MS,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, MailError::SmtpConnect { port: p, .. } if *p == port),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("smtp connect 127.0.0.1:{port}: ")),
        "{err}"
    );
}

#[test]
fn a_silent_server_is_a_timeout() {
    // Not an SMTP server: a listening socket that never accepts, so the kernel completes
    // the TCP handshake and the greeting never comes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port: silent.local_addr().unwrap().port(),
        security: SmtpSecurity::None,
        username: None,
        password_env: None,
        timeout_ms: 300,
    };
    let p = payload(&["a@example.com"]);
    let message = render(&p, &from(), "<silent@runloop.test>", DATE_MS).unwrap();
    let started = Instant::now();
    let err = send_smtp(&cfg, &from(), &p, &message).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            MailError::SmtpTimeout {
                step: SmtpStep::Connect,
                timeout_ms: 300
            }
        ),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took.as_millis() < QUICK_MS,
        "took {took:?}"
    );
}

#[test]
fn a_refused_recipient_carries_the_server_code_and_text() {
    let server = Server::start(&["nobody@example.com"]);
    let p = payload(&["nobody@example.com"]);
    let message = render(&p, &from(), "<refused@runloop.test>", DATE_MS).unwrap();
    let err = send_smtp(&server.config(SmtpSecurity::None), &from(), &p, &message).unwrap_err();
    match &err {
        MailError::SmtpRefused {
            step: SmtpStep::Send,
            code: 550,
            text,
        } => {
            assert!(
                text.contains("<nobody@example.com>: mailbox unavailable"),
                "{text}"
            );
        }
        other => panic!("expected a 550 refusal, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("smtp send: the server refused with 550 "),
        "{err}"
    );
    assert!(server.received().is_empty());
}

#[test]
fn starttls_to_a_server_without_it_is_a_tls_error() {
    let server = Server::start(&[]);
    let p = payload(&["a@example.com"]);
    let message = render(&p, &from(), "<starttls@runloop.test>", DATE_MS).unwrap();
    let err = send_smtp(
        &server.config(SmtpSecurity::Starttls),
        &from(),
        &p,
        &message,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            MailError::SmtpTls {
                step: SmtpStep::Starttls,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(server.received().is_empty());
}

#[test]
fn implicit_tls_to_a_plaintext_server_is_a_tls_error() {
    let server = Server::start(&[]);
    let p = payload(&["a@example.com"]);
    let message = render(&p, &from(), "<tls@runloop.test>", DATE_MS).unwrap();
    let started = Instant::now();
    let err = send_smtp(&server.config(SmtpSecurity::Tls), &from(), &p, &message).unwrap_err();
    assert!(
        matches!(
            err,
            MailError::SmtpTls {
                step: SmtpStep::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed().as_millis() < QUICK_MS,
        "took {:?}",
        started.elapsed()
    );
    assert!(server.received().is_empty());
}
