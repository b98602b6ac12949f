//! Glob matching on bytes: `*` matches any run (also empty), `?` one byte, everything else
//! itself. One matcher for every list of patterns: trust-root scopes (`trust::Scope`,
//! whose parser admits no `?`) and the router's allow- and denylists (`rlp route`).

/// Whether `pattern` matches all of `text`. Iterative with one backtrack point (the last
/// `*`), so at most `pattern.len() × text.len()` steps.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        let yes = [
            ("*", ""),
            ("*", "mail"),
            ("mail*", "mailer"),
            ("*er", "mailer"),
            ("m?il*", "mailer"),
            ("a*b*c", "aXbYc"),
            ("a**", "a"),
            ("mailer", "mailer"),
        ];
        for (p, t) in yes {
            assert!(matches(p.as_bytes(), t.as_bytes()), "{p} ~ {t}");
        }
        let no = [
            ("mail", "mailer"),
            ("?", ""),
            ("a*b", "ac"),
            ("*x", "mailer"),
            ("", "a"),
        ];
        for (p, t) in no {
            assert!(!matches(p.as_bytes(), t.as_bytes()), "{p} !~ {t}");
        }
    }
}
