//! The pure half of resolving: names split into words, the tiers computed in the guest
//! (name word, close spelling), the full-text query text and the messages.

/// Longest name word compared by edit distance; longer words only match exactly or by
/// prefix (the distance table is `O(a·b)`).
const DISTANCE_WORD_CHARS_MAX: usize = 64;
/// Shortest recipient that may match as the prefix of a name word ("joh" → "johanna").
pub(crate) const PREFIX_CHARS_MIN: usize = 3;
/// Most words taken from the recipient for the full-text query.
pub(crate) const FTS_TERMS_MAX: usize = 16;
/// Most candidates named in an ambiguity message.
pub(crate) const CANDIDATES_SHOWN_MAX: usize = 5;

/// One contact row: what the agent emits when it is the only match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Contact {
    pub(crate) contact_id: String,
    pub(crate) name: String,
    pub(crate) email: Option<String>,
}

impl Contact {
    /// `John Smith <john.smith@example.com>`, or the name alone when it has no address.
    pub(crate) fn display(&self) -> String {
        match &self.email {
            Some(email) => format!("{} <{email}>", self.name),
            None => format!("{} (no email)", self.name),
        }
    }
}

/// Lowercase words of a name (letters, digits and apostrophes), for comparisons.
pub(crate) fn name_words(name: &str) -> Vec<String> {
    name.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The recipient as compared: trimmed, inner whitespace collapsed, lowercase.
pub(crate) fn normalise(recipient: &str) -> String {
    recipient
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Tier "name": the recipient is one whole word of the name (a first or last name) or
/// the local part of the address. Only single-word recipients take part: several words
/// are a full name, which the exact tier has already compared.
pub(crate) fn is_name_word_match(query: &str, contact: &Contact) -> bool {
    if query.contains(' ') || query.is_empty() {
        return false;
    }
    let local = contact
        .email
        .as_deref()
        .and_then(|e| e.split('@').next())
        .map(str::to_lowercase);
    name_words(&contact.name).iter().any(|w| w == query) || local.as_deref() == Some(query)
}

/// Tier "close": the recipient is the prefix of a name word (at least
/// [`PREFIX_CHARS_MIN`] characters), or within [`allowed_distance`] edits of a name word
/// or of the whole name (a transposition counts as one edit).
pub(crate) fn is_close_match(query: &str, contact: &Contact) -> bool {
    let query_chars = query.chars().count();
    if query_chars == 0 {
        return false;
    }
    let limit = allowed_distance(query_chars);
    let words = name_words(&contact.name);
    let prefix = query_chars >= PREFIX_CHARS_MIN && words.iter().any(|w| w.starts_with(query));
    let near = |candidate: &str| {
        candidate.chars().count() <= DISTANCE_WORD_CHARS_MAX
            && osa_distance(query, candidate) <= limit
    };
    prefix || words.iter().any(|w| near(w)) || near(&normalise(&contact.name))
}

/// Edits a close match may need: one for short names (up to 5 characters), two beyond.
pub(crate) fn allowed_distance(chars: usize) -> usize {
    if chars <= 5 { 1 } else { 2 }
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions), by chars.
pub(crate) fn osa_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back for the transposition, one back, and the current one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The FTS5 query for a recipient: each word double-quoted (so `"`, `*`, `NEAR(`, `-`,
/// `OR` and `:` in the text are only words or nothing) and all of them required.
/// `None` when the recipient has no word at all.
pub(crate) fn fts_query(recipient: &str) -> Option<String> {
    let terms: Vec<String> = recipient
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .take(FTS_TERMS_MAX)
        .map(|t| format!("\"{t}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// `3 contacts match "john": A <a@x>, B <b@x>, C <c@x>; name one exactly`.
pub(crate) fn ambiguity(recipient: &str, candidates: &[Contact]) -> String {
    assert!(candidates.len() > 1, "ambiguity needs several candidates");
    let mut shown: Vec<String> = candidates
        .iter()
        .take(CANDIDATES_SHOWN_MAX)
        .map(Contact::display)
        .collect();
    if candidates.len() > CANDIDATES_SHOWN_MAX {
        shown.push(format!(
            "and {} more",
            candidates.len() - CANDIDATES_SHOWN_MAX
        ));
    }
    format!(
        "{} contacts match {recipient:?}: {}; name one exactly",
        candidates.len(),
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, name: &str, email: &str) -> Contact {
        Contact {
            contact_id: id.into(),
            name: name.into(),
            email: Some(email.into()),
        }
    }

    #[test]
    fn distance_counts_transpositions_as_one() {
        assert_eq!(osa_distance("john", "john"), 0);
        assert_eq!(osa_distance("jon", "john"), 1);
        assert_eq!(osa_distance("jhon", "john"), 1);
        assert_eq!(osa_distance("smyth", "smith"), 1);
        assert_eq!(osa_distance("", "abc"), 3);
        assert_eq!(osa_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn name_words_match_whole_words_and_the_local_part() {
        let john = contact("john-smith", "John Smith", "john.smith@example.com");
        assert!(is_name_word_match("john", &john));
        assert!(is_name_word_match("smith", &john));
        assert!(is_name_word_match("john.smith", &john));
        assert!(!is_name_word_match("jo", &john));
        assert!(!is_name_word_match("john smith", &john));
    }

    #[test]
    fn close_matches_are_prefixes_or_near_spellings() {
        let johanna = contact("jb", "Johanna Berg", "jb@example.org");
        let jon = contact("jm", "Jon Meyer", "jm@example.com");
        assert!(is_close_match("joh", &johanna));
        assert!(!is_close_match("jo", &johanna), "prefixes need 3 chars");
        assert!(is_close_match("john", &jon));
        assert!(!is_close_match("john", &johanna));
        assert!(
            is_close_match("jon meyr", &jon),
            "whole name within 2 edits"
        );
        assert!(!is_close_match("maria", &jon));
    }

    #[test]
    fn fts_query_quotes_every_word_and_drops_syntax() {
        assert_eq!(fts_query("John").as_deref(), Some("\"John\""));
        assert_eq!(
            fts_query("\"); DROP TABLE contacts; --").as_deref(),
            Some("\"DROP\" \"TABLE\" \"contacts\"")
        );
        assert_eq!(
            fts_query("NEAR(john smith)").as_deref(),
            Some("\"NEAR\" \"john\" \"smith\"")
        );
        assert_eq!(fts_query(" -*: \" ").as_deref(), None);
    }

    #[test]
    fn ambiguity_names_at_most_five() {
        let many: Vec<Contact> = (0..7)
            .map(|i| contact(&format!("c{i}"), &format!("John {i}"), "j@example.com"))
            .collect();
        let message = ambiguity("john", &many);
        assert!(message.starts_with("7 contacts match \"john\": John 0 <j@example.com>"));
        assert!(
            message.ends_with(", and 2 more; name one exactly"),
            "{message}"
        );
    }
}
