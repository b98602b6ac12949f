//! The critic's rules: each a function from the draft to its problems, in a fixed order.

use serde::Serialize;

/// Shortest body accepted, in characters.
pub(crate) const BODY_CHARS_MIN: usize = 20;
/// Longest body accepted, in characters.
pub(crate) const BODY_CHARS_MAX: usize = 5_000;
/// Longest subject accepted, in characters.
pub(crate) const SUBJECT_CHARS_MAX: usize = 200;
/// Most recipients of one draft.
pub(crate) const RECIPIENTS_MAX: usize = 20;
/// Longest address (RFC 5321's path limit less the brackets).
const ADDRESS_BYTES_MAX: usize = 254;
/// Longest local part (RFC 5321).
const LOCAL_PART_BYTES_MAX: usize = 64;
/// Longest `<…>` or `[…]` word span taken for a placeholder.
const PLACEHOLDER_CHARS_MAX: usize = 32;
/// Where the writer's sources footer starts.
pub(crate) const SOURCES_HEADING: &str = "\n\nSources:";

/// Text that is never meant to reach a recipient, matched case-insensitively.
const PLACEHOLDERS: [&str; 8] = [
    "todo",
    "fixme",
    "{{",
    "}}",
    "lorem ipsum",
    "xxx",
    "tbd:",
    "insert here",
];

/// One rule's name (closed, as `problems[].rule` writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rule {
    Recipient,
    Subject,
    BodyLength,
    Placeholder,
    Citation,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Problem {
    pub(crate) rule: Rule,
    pub(crate) message: String,
}

/// The draft as the critic reads it: every field optional, so a missing one is a finding
/// rather than a decode error.
#[derive(Debug, Default)]
pub(crate) struct DraftView {
    pub(crate) to: Vec<(Option<String>, Option<String>)>,
    pub(crate) subject: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) citations: Vec<String>,
    pub(crate) passages_offered: Option<u64>,
}

fn problem(rule: Rule, message: String) -> Problem {
    Problem { rule, message }
}

/// Whether `address` looks deliverable: one `@`, a plain local part, a dotted domain of
/// letter/digit/hyphen labels ending in an alphabetic top-level label.
pub(crate) fn is_valid_address(address: &str) -> bool {
    if address.len() > ADDRESS_BYTES_MAX {
        return false;
    }
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= LOCAL_PART_BYTES_MAX
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok
}

/// Rule `recipient`: at least one, at most [`RECIPIENTS_MAX`], each with a valid address.
pub(crate) fn recipients(d: &DraftView) -> Vec<Problem> {
    let mut out = Vec::new();
    if d.to.is_empty() {
        out.push(problem(
            Rule::Recipient,
            "the draft has no recipient".into(),
        ));
    }
    if d.to.len() > RECIPIENTS_MAX {
        out.push(problem(
            Rule::Recipient,
            format!("{} recipients, at most {RECIPIENTS_MAX}", d.to.len()),
        ));
    }
    for (i, (name, email)) in d.to.iter().enumerate().take(RECIPIENTS_MAX) {
        let who = name.as_deref().unwrap_or("?");
        match email.as_deref() {
            None => out.push(problem(
                Rule::Recipient,
                format!("recipient {} ({who}) has no address", i + 1),
            )),
            Some(e) if !is_valid_address(e) => out.push(problem(
                Rule::Recipient,
                format!("recipient {} ({who}): {e:?} is not a valid address", i + 1),
            )),
            Some(_) => {}
        }
    }
    out
}

/// Rule `subject`: present, one line, at most [`SUBJECT_CHARS_MAX`] characters.
pub(crate) fn subject(d: &DraftView) -> Vec<Problem> {
    let s = d.subject.as_deref().unwrap_or("");
    let message = if s.trim().is_empty() {
        "the subject is empty".to_owned()
    } else if s.chars().any(char::is_control) {
        "the subject has a line break or control character".to_owned()
    } else if s.chars().count() > SUBJECT_CHARS_MAX {
        format!("the subject is over {SUBJECT_CHARS_MAX} characters")
    } else {
        return Vec::new();
    };
    vec![problem(Rule::Subject, message)]
}

/// Rule `body_length`: [`BODY_CHARS_MIN`]..=[`BODY_CHARS_MAX`] characters.
pub(crate) fn body_length(d: &DraftView) -> Vec<Problem> {
    let n = d.body.as_deref().unwrap_or("").trim().chars().count();
    if (BODY_CHARS_MIN..=BODY_CHARS_MAX).contains(&n) {
        return Vec::new();
    }
    vec![problem(
        Rule::BodyLength,
        format!("the body has {n} characters; expected {BODY_CHARS_MIN}..={BODY_CHARS_MAX}"),
    )]
}

/// `<first name>` or `[Your Name]`: a bracketed span of letters and spaces. Citation
/// markers (`[1]`) and addresses (`<a@b.c>`) are not.
fn bracket_placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (open, close) in [('<', '>'), ('[', ']')] {
        for (start, _) in text.match_indices(open) {
            let inner: String = text[start + 1..]
                .chars()
                .take_while(|&c| c != close)
                .take(PLACEHOLDER_CHARS_MAX + 1)
                .collect();
            let closed = text[start + 1 + inner.len()..].starts_with(close);
            let wordy = inner.chars().next().is_some_and(char::is_alphabetic)
                && inner
                    .chars()
                    .all(|c| c.is_alphabetic() || c == ' ' || c == '_');
            if closed && wordy && inner.chars().count() <= PLACEHOLDER_CHARS_MAX {
                found.push(format!("{open}{inner}{close}"));
            }
        }
    }
    found
}

/// Rule `placeholder`: template leftovers in the subject or body.
pub(crate) fn placeholders(d: &DraftView) -> Vec<Problem> {
    let mut out = Vec::new();
    for (part, text) in [("subject", &d.subject), ("body", &d.body)] {
        let text = text.as_deref().unwrap_or("");
        let lower = text.to_lowercase();
        let mut found: Vec<String> = PLACEHOLDERS
            .iter()
            .filter(|p| lower.contains(*p))
            .map(|p| (*p).to_owned())
            .collect();
        found.extend(bracket_placeholders(text));
        for p in found {
            out.push(problem(
                Rule::Placeholder,
                format!("the {part} contains the placeholder {p:?}"),
            ));
        }
    }
    out
}

/// Citation markers `[n]` in `text`, in order (one to three digits).
pub(crate) fn markers(text: &str) -> Vec<usize> {
    text.match_indices('[')
        .filter_map(|(i, _)| {
            let digits: String = text[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let closed = text[i + 1 + digits.len()..].starts_with(']');
            (closed && (1..=3).contains(&digits.len())).then(|| digits.parse().ok())?
        })
        .collect()
}

/// Rule `citation`: markers name listed citations, citations are POG entities listed in
/// the sources footer and used in the text, and a draft offered passages cites one.
pub(crate) fn citations(d: &DraftView) -> Vec<Problem> {
    let mut out = Vec::new();
    let body = d.body.as_deref().unwrap_or("");
    let (text, footer) = body.split_once(SOURCES_HEADING).unwrap_or((body, ""));
    let n = d.citations.len();
    let used = markers(text);
    let mut bad: Vec<usize> = used.iter().copied().filter(|m| *m == 0 || *m > n).collect();
    bad.sort_unstable();
    bad.dedup();
    for m in bad {
        out.push(problem(
            Rule::Citation,
            format!("marker [{m}] names no citation ({n} listed)"),
        ));
    }
    for (i, c) in d.citations.iter().enumerate() {
        let entity_ok = c.split_once(':').is_some_and(|(kind, id)| {
            !id.is_empty() && kind.chars().all(|k| k.is_ascii_lowercase()) && !kind.is_empty()
        });
        if !entity_ok {
            out.push(problem(
                Rule::Citation,
                format!("citation {c:?} is not a POG entity (kind:id)"),
            ));
        }
        if !used.contains(&(i + 1)) {
            out.push(problem(
                Rule::Citation,
                format!("citation [{}] {c} is never referenced in the text", i + 1),
            ));
        }
        if !footer
            .lines()
            .any(|l| l.trim() == format!("[{}] {c}", i + 1))
        {
            out.push(problem(
                Rule::Citation,
                format!("citation [{}] {c} is not listed under Sources", i + 1),
            ));
        }
    }
    if let Some(offered) = d.passages_offered.filter(|p| *p > 0)
        && n == 0
    {
        out.push(problem(
            Rule::Citation,
            format!("{offered} passages were offered but nothing is cited"),
        ));
    }
    out
}

/// Every rule, in order.
pub(crate) fn check(d: &DraftView) -> Vec<Problem> {
    let rules: [fn(&DraftView) -> Vec<Problem>; 5] =
        [recipients, subject, body_length, placeholders, citations];
    rules.iter().flat_map(|rule| rule(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in ["john.smith@example.com", "a+b@mail.example.org", "x@y.io"] {
            assert!(is_valid_address(ok), "{ok}");
        }
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "john@example",
            "john@@example.com",
            "john smith@example.com",
            "john@exa mple.com",
            "john@example.c0m",
            "john@-example.com",
            "john@example..com",
            ".john@example.com",
            "<j@x.com>",
        ] {
            assert!(!is_valid_address(bad), "{bad}");
        }
    }

    #[test]
    fn placeholders_found_in_brackets_and_words() {
        assert_eq!(
            bracket_placeholders("Hi <first name>, [Your Name] [1] <a@b.co>"),
            vec!["<first name>", "[Your Name]"]
        );
        let d = DraftView {
            subject: Some("Q4 plan".into()),
            body: Some("Hi {{name}}, TODO: numbers. XXX".into()),
            ..DraftView::default()
        };
        let found: Vec<String> = placeholders(&d).into_iter().map(|p| p.message).collect();
        assert_eq!(
            found,
            vec![
                "the body contains the placeholder \"todo\"",
                "the body contains the placeholder \"{{\"",
                "the body contains the placeholder \"}}\"",
                "the body contains the placeholder \"xxx\"",
            ]
        );
    }

    #[test]
    fn markers_are_one_to_three_digits_in_brackets() {
        assert_eq!(markers("a [1] b [12]. [x] [] [1234] [3"), vec![1, 12]);
    }
}
