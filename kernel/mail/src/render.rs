//! [`render`]: a [`MailPayload`] to RFC 5322 bytes through lettre's message builder,
//! deterministically (the kernel passes the date and the Message-ID in), and the
//! Message-ID rule shared with the Maildir's file names.

use std::time::{Duration, UNIX_EPOCH};

use lettre::Message;
use lettre::message::SinglePart;

use crate::error::MailError;
use crate::payload::{MailPayload, Mailbox};
use crate::{BODY_BYTES_MAX, MESSAGE_BYTES_MAX, MESSAGE_ID_BYTES_MAX};

/// The last millisecond the Date header can express: 9999-12-31T23:59:59.999Z (httpdate,
/// under lettre's Date header, panics past it).
pub const DATE_MS_MAX: u64 = 253_402_300_799_999;

/// Headers are bounded by the payload's limits (50 recipients of at most 254 + 256 bytes,
/// each name at most tripled by RFC 2047 encoding, a subject of 512 bytes); the body at
/// most doubles when every LF becomes CRLF and then grows by a third (plus line breaks)
/// when base64-encoded. A message within the payload limits therefore stays well under
/// [`MESSAGE_BYTES_MAX`]; `render` asserts it.
const _: () = assert!(BODY_BYTES_MAX * 2 * 4 / 3 * 78 / 76 + 512 * 1024 <= MESSAGE_BYTES_MAX);

/// Renders the RFC 5322 message for `payload` from `from`, as lettre formats it: headers
/// `From`, `To`, `Cc` (if any), `Subject`, `Message-ID`, `Date`, `MIME-Version`,
/// `Content-Type: text/plain; charset=utf-8`, `Content-Transfer-Encoding` (7bit,
/// quoted-printable or base64, whichever lettre finds fits), then the body with CRLF line
/// ends.
///
/// Deterministic: the same inputs give the same bytes. `date_ms` (milliseconds since the
/// Unix epoch, at most [`DATE_MS_MAX`]) becomes the Date header (to the second, `+0000`);
/// `message_id` is used as given and must follow the crate's Message-ID rule. The payload
/// and `from` are validated first.
pub fn render(
    payload: &MailPayload,
    from: &Mailbox,
    message_id: &str,
    date_ms: u64,
) -> Result<Vec<u8>, MailError> {
    payload.validate()?;
    check_message_id(message_id)?;
    if date_ms > DATE_MS_MAX {
        return Err(MailError::Date { date_ms });
    }
    let date = UNIX_EPOCH + Duration::from_millis(date_ms);

    let mut builder = Message::builder()
        .from(from.to_lettre("from")?)
        .subject(payload.subject.as_str())
        .message_id(Some(message_id.to_owned()))
        .date(date);
    for (i, m) in payload.to.iter().enumerate() {
        builder = builder.to(m.to_lettre(&format!("to[{i}]"))?);
    }
    for (i, m) in payload.cc.iter().enumerate() {
        builder = builder.cc(m.to_lettre(&format!("cc[{i}]"))?);
    }
    let message = builder
        .singlepart(SinglePart::plain(crlf_line_ends(&payload.body)))
        .map_err(|source| MailError::Build { source })?;
    let bytes = message.formatted();
    assert!(
        bytes.len() <= MESSAGE_BYTES_MAX,
        "a valid payload rendered to {} bytes",
        bytes.len()
    );
    Ok(bytes)
}

/// Every line end (LF, CR or CRLF) as CRLF, in one pass. lettre would insert the CRs
/// itself, but one `String::insert` per LF (quadratic for a body of many short lines),
/// and it leaves a bare CR alone, which SMTP forbids.
fn crlf_line_ends(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + body.len() / 16);
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// Checks the Message-ID rule and returns the id without its angle brackets, which is
/// also the message's Maildir file name.
///
/// The rule: `<left@right>`, at most [`MESSAGE_ID_BYTES_MAX`] bytes in all; `left` and
/// `right` are RFC 5322 dot-atoms (non-empty runs of atext joined by single dots) whose
/// atext excludes `/`. So the name has no `/` (a path separator), no `:` (Maildir's info
/// separator), cannot start with a dot (readers skip dot files) and cannot be `.` or `..`.
pub(crate) fn check_message_id(message_id: &str) -> Result<&str, MailError> {
    let refuse = |reason: &'static str| MailError::MessageId {
        value: message_id.to_owned(),
        reason,
    };
    if message_id.len() > MESSAGE_ID_BYTES_MAX {
        return Err(refuse("too long"));
    }
    let inner = message_id
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .ok_or_else(|| refuse("must be enclosed in < and >"))?;
    let (left, right) = inner
        .split_once('@')
        .ok_or_else(|| refuse("must contain @"))?;
    for part in [left, right] {
        if !is_dot_atom(part) {
            return Err(refuse(
                "each side of @ must be dot-separated runs of letters, digits and !#$%&'*+-=?^_`{|}~",
            ));
        }
    }
    Ok(inner)
}

/// RFC 5322 dot-atom-text, with `/` removed from atext.
fn is_dot_atom(s: &str) -> bool {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-=?^_`{|}~".contains(c);
    !s.is_empty()
        && s.split('.')
            .all(|run| !run.is_empty() && run.chars().all(atext))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "<r.1@runloop.test>";
    /// 2023-11-14T22:13:20.123Z
    const DATE_MS: u64 = 1_700_000_000_123;

    fn payload() -> MailPayload {
        MailPayload {
            to: vec![
                Mailbox::named("John Smith", "john@example.com"),
                Mailbox::new("ann@example.com"),
            ],
            cc: vec![Mailbox::new("cc@example.com")],
            subject: "Q4 plan".into(),
            body: "Hello John,\nthe plan is attached.\n".into(),
        }
    }

    fn from() -> Mailbox {
        Mailbox::named("Runloop", "agent@runloop.test")
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn same_inputs_same_bytes() {
        let a = render(&payload(), &from(), ID, DATE_MS).unwrap();
        let b = render(&payload(), &from(), ID, DATE_MS).unwrap();
        assert_eq!(a, b);
        let later = render(&payload(), &from(), ID, DATE_MS + 1000).unwrap();
        assert_ne!(a, later, "the date is an input");
    }

    #[test]
    fn the_message_has_its_headers_and_body() {
        let m = text(&render(&payload(), &from(), ID, DATE_MS).unwrap());
        let (head, body) = m.split_once("\r\n\r\n").unwrap();
        let headers: Vec<&str> = head.split("\r\n").collect();
        for expected in [
            "From: Runloop <agent@runloop.test>",
            "To: \"John Smith\" <john@example.com>, ann@example.com",
            "Cc: cc@example.com",
            "Subject: Q4 plan",
            "Message-ID: <r.1@runloop.test>",
            "Date: Tue, 14 Nov 2023 22:13:20 +0000",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
        ] {
            assert!(
                headers.contains(&expected),
                "{expected:?} not in {headers:?}"
            );
        }
        // lettre ends the body part with one more CRLF.
        assert_eq!(body, "Hello John,\r\nthe plan is attached.\r\n\r\n");
        assert!(
            !m.replace("\r\n", "").contains(['\r', '\n']),
            "every line ends in CRLF"
        );
    }

    #[test]
    fn non_ascii_text_is_encoded() {
        let mut p = payload();
        p.subject = "Plan für Q4".into();
        p.body = "Grüße\n".into();
        let m = text(&render(&p, &from(), ID, DATE_MS).unwrap());
        assert!(m.is_ascii(), "{m}");
        assert!(
            m.contains("Subject: Plan =?utf-8?b?ZsO8cg==?= Q4\r\n"),
            "{m}"
        );
        // The shorter of quoted-printable and base64; here base64 of "Grüße\r\n".
        assert!(
            m.contains("Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZQ0K\r\n"),
            "{m}"
        );
    }

    #[test]
    fn header_injection_in_the_subject_is_refused() {
        let mut p = payload();
        p.subject = "Hi\r\nBcc: everyone@example.com".into();
        assert!(matches!(p.validate(), Err(MailError::Subject { .. })));
        assert!(matches!(
            render(&p, &from(), ID, DATE_MS),
            Err(MailError::Subject { .. })
        ));
    }

    #[test]
    fn bad_kernel_inputs_are_refused() {
        let bad_from = Mailbox::new("not an address");
        let err = render(&payload(), &bad_from, ID, DATE_MS).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"from: "not an address" is not an email address"#
        );
        let err = render(&payload(), &from(), "<a\r\nBcc: x@y>", DATE_MS).unwrap_err();
        assert!(matches!(err, MailError::MessageId { .. }), "{err}");
        let err = render(&payload(), &from(), ID, DATE_MS_MAX + 1).unwrap_err();
        assert!(matches!(err, MailError::Date { date_ms } if date_ms == DATE_MS_MAX + 1));
        let last = text(&render(&payload(), &from(), ID, DATE_MS_MAX).unwrap());
        assert!(
            last.contains("Date: Fri, 31 Dec 9999 23:59:59 +0000"),
            "{last}"
        );
    }

    #[test]
    fn the_largest_bodies_render_within_the_message_limit() {
        // Every LF becomes CRLF (7bit, twice the size); with a long line and a non-ASCII
        // character it is also base64- or QP-encoded. Both stay under the limit, in one pass.
        let mut p = payload();
        p.body = "\n".repeat(BODY_BYTES_MAX);
        let m = render(&p, &from(), ID, DATE_MS).unwrap();
        assert!(m.len() > 2 * BODY_BYTES_MAX && m.len() <= MESSAGE_BYTES_MAX);
        p.body = format!("é{}", "x".repeat(100)) + &"\n".repeat(BODY_BYTES_MAX - 102);
        let m = render(&p, &from(), ID, DATE_MS).unwrap();
        assert!(m.len() <= MESSAGE_BYTES_MAX);
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(
            crlf_line_ends("a\nb\r\nc\rd\n\n"),
            "a\r\nb\r\nc\r\nd\r\n\r\n"
        );
        assert_eq!(crlf_line_ends("no breaks"), "no breaks");
        assert_eq!(crlf_line_ends("\r"), "\r\n");
    }

    #[test]
    fn message_ids() {
        assert_eq!(
            check_message_id("<abc.1@runloop.invalid>").unwrap(),
            "abc.1@runloop.invalid"
        );
        for bad in [
            "abc@x",
            "<abc>",
            "<@x>",
            "<a@>",
            "<.a@x>",
            "<a.@x>",
            "<a..b@x>",
            "<a/b@x>",
            "<a:b@x>",
            "<a@b@c>",
            "<a b@x>",
            "<a@[127.0.0.1]>",
            "<a\r\nBcc: x@y@z>",
        ] {
            assert!(check_message_id(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("<{}@x>", "a".repeat(MESSAGE_ID_BYTES_MAX));
        assert!(check_message_id(&long).is_err());
    }
}
