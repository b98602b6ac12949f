//! The pure half of writing: marked fact lines for the prompt, citation markers in the
//! model's text renumbered, and the body around it (greeting, sign-off, sources).

/// Sentences taken from one passage.
const SENTENCES_PER_PASSAGE_MAX: usize = 16;
/// Longest marker number read from the model's text.
const MARKER_DIGITS_MAX: usize = 3;

/// Sentences of `text`: cut after `.`, `!` or `?` followed by whitespace (or the end),
/// and at line breaks, so `480k.` ends a sentence and `mid-October` does not.
pub(crate) fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' || c == '\r' {
            push_sentence(&mut out, &mut current);
            continue;
        }
        current.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            push_sentence(&mut out, &mut current);
        }
    }
    push_sentence(&mut out, &mut current);
    out
}

fn push_sentence(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if s.chars().any(char::is_alphanumeric) {
        out.push(s.to_owned());
    }
    current.clear();
}

/// One sentence with its source marker before the closing punctuation:
/// `The budget is 480k.` → `The budget is 480k [2].`
pub(crate) fn mark(sentence: &str, marker: usize) -> String {
    let body = sentence.trim_end_matches(['.', '!', '?']);
    let end = &sentence[body.len()..];
    let end = if end.is_empty() { "." } else { end };
    format!("{body} [{marker}]{end}")
}

/// The facts as the model's last user message: one marked sentence per line, passage
/// `i` (0-based) marked `[i + 1]`. The offline writer extracts whole sentences from this
/// message, so each sentence it keeps carries its own marker.
pub(crate) fn fact_lines(passages: &[&str]) -> String {
    let mut lines = Vec::new();
    for (i, text) in passages.iter().enumerate() {
        for s in sentences(text).iter().take(SENTENCES_PER_PASSAGE_MAX) {
            lines.push(mark(s, i + 1));
        }
    }
    lines.join("\n")
}

/// The model's text with markers renumbered in order of first use (`[3] … [1]` →
/// `[1] … [2]`) and markers naming no passage removed; with the cited passages' indexes
/// (0-based), in the new order.
pub(crate) fn renumber(text: &str, passages: usize) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut cited: Vec<usize> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let (before, from) = rest.split_at(open);
        out.push_str(before);
        let digits: String = from[1..].chars().take_while(char::is_ascii_digit).collect();
        let closes = from[1 + digits.len()..].starts_with(']');
        if digits.is_empty() || digits.len() > MARKER_DIGITS_MAX || !closes {
            out.push('[');
            rest = &from[1..];
            continue;
        }
        rest = &from[digits.len() + 2..];
        let n: usize = digits.parse().expect("at most three ASCII digits");
        if n == 0 || n > passages {
            // A marker that names no passage is dropped with the space before it.
            let kept = out.trim_end_matches(' ').len();
            out.truncate(kept);
            continue;
        }
        let index = match cited.iter().position(|&c| c == n - 1) {
            Some(p) => p,
            None => {
                cited.push(n - 1);
                cited.len() - 1
            }
        };
        out.push_str(&format!("[{}]", index + 1));
    }
    out.push_str(rest);
    (out, cited)
}

/// Drops a greeting line a model may have written despite being told not to.
pub(crate) fn without_greeting(text: &str) -> &str {
    let text = text.trim();
    let first = text.lines().next().unwrap_or("");
    let lower = first.to_lowercase();
    let greeting = ["hi ", "hello ", "dear ", "hey "]
        .iter()
        .any(|g| lower.starts_with(g))
        && first.trim_end().ends_with(',')
        && first.len() <= 80;
    if greeting {
        text[first.len()..].trim_start()
    } else {
        text
    }
}

/// `Hi John,` for one recipient, `Hi John and Maria,` for two, `Hi all,` beyond.
pub(crate) fn greeting(names: &[&str]) -> String {
    let first = |name: &&str| name.split_whitespace().next().unwrap_or("").to_owned();
    let firsts: Vec<String> = names.iter().map(first).filter(|n| !n.is_empty()).collect();
    match firsts.as_slice() {
        [] => "Hi,".to_owned(),
        [one] => format!("Hi {one},"),
        [a, b] => format!("Hi {a} and {b},"),
        _ => "Hi all,".to_owned(),
    }
}

/// The whole body: greeting, the model's text, sign-off, and the sources footer listing
/// each citation as `[n] <POG entity>` so a reader can `rlp kb why` it.
pub(crate) fn body(greeting: &str, text: &str, sender: Option<&str>, sources: &[String]) -> String {
    let mut body = format!("{greeting}\n\n{text}\n\nBest regards,");
    if let Some(sender) = sender.map(str::trim).filter(|s| !s.is_empty()) {
        body.push('\n');
        body.push_str(sender);
    }
    if !sources.is_empty() {
        body.push_str("\n\nSources:");
        for (i, source) in sources.iter().enumerate() {
            body.push_str(&format!("\n[{}] {source}", i + 1));
        }
    }
    body
}

/// The subject from the topic: one line, first letter upper-case (`q4 plan` → `Q4 plan`).
pub(crate) fn subject(topic: &str) -> String {
    let line: String = topic
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut chars = line.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_terminal_punctuation_and_lines() {
        assert_eq!(
            sentences("The budget is 480k. It splits 60/40!\nmid-October start"),
            vec![
                "The budget is 480k.",
                "It splits 60/40!",
                "mid-October start"
            ]
        );
        assert_eq!(sentences("v1.2 ships. ..."), vec!["v1.2 ships."]);
        assert!(sentences(" \n -- ").is_empty());
    }

    #[test]
    fn marks_go_before_the_closing_punctuation() {
        assert_eq!(mark("The budget is 480k.", 2), "The budget is 480k [2].");
        assert_eq!(mark("Really?!", 1), "Really [1]?!");
        assert_eq!(mark("no end", 3), "no end [3].");
        assert_eq!(
            fact_lines(&["A one. A two.", "B one"]),
            "A one [1].\nA two [1].\nB one [2]."
        );
    }

    #[test]
    fn markers_are_renumbered_in_order_of_use() {
        let (text, cited) = renumber("C [3]. A [1]. C again [3]. Bad [9]. [x] [] [1234]", 3);
        assert_eq!(text, "C [1]. A [2]. C again [1]. Bad. [x] [] [1234]");
        assert_eq!(cited, vec![2, 0]);
        let (text, cited) = renumber("no markers", 2);
        assert_eq!((text.as_str(), cited.len()), ("no markers", 0));
        let (text, _) = renumber("ends [", 1);
        assert_eq!(text, "ends [");
    }

    #[test]
    fn greetings_bodies_and_subjects() {
        assert_eq!(greeting(&["John Smith"]), "Hi John,");
        assert_eq!(
            greeting(&["John Smith", "Maria Garcia"]),
            "Hi John and Maria,"
        );
        assert_eq!(greeting(&["a", "b", "c"]), "Hi all,");
        assert_eq!(greeting(&[""]), "Hi,");
        assert_eq!(without_greeting("Hi John,\nThe plan [1]."), "The plan [1].");
        assert_eq!(without_greeting("Hi there is news."), "Hi there is news.");
        assert_eq!(
            body("Hi John,", "Text [1].", Some("Ada"), &["note:a".into()]),
            "Hi John,\n\nText [1].\n\nBest regards,\nAda\n\nSources:\n[1] note:a"
        );
        assert_eq!(
            body("Hi,", "Text.", None, &[]),
            "Hi,\n\nText.\n\nBest regards,"
        );
        assert_eq!(subject("q4 plan"), "Q4 plan");
        assert_eq!(subject("  the\nQ4\r\nplan "), "The Q4 plan");
    }
}
