//! The router's word lists: shell builtins and keywords, interrogatives, function words of
//! English prose, and the commands that are also everyday English verbs or nouns. Data, not
//! logic; each list says why it exists (`docs/router.md`).

/// POSIX special and regular builtins, common bash builtins, and the reserved words a
/// command line can start with. A prompt starting with one goes to the shell (unless the
/// word is also in [`AMBIGUOUS`] and the rest reads as prose).
pub const BUILTINS: &[&str] = &[
    ".", ":", "[", "[[", "((", "{", "!", "alias", "bg", "bind", "break", "builtin", "case", "cd",
    "command", "continue", "declare", "dirs", "disown", "echo", "enable", "eval", "exec", "exit",
    "export", "false", "fc", "fg", "for", "function", "getopts", "hash", "history", "if", "jobs",
    "kill", "let", "local", "logout", "popd", "printf", "pushd", "pwd", "read", "readonly",
    "return", "select", "set", "shift", "shopt", "source", "test", "time", "times", "trap", "true",
    "type", "typeset", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
];

/// Words a question starts with. A prompt of two words or more that starts with one and
/// ends with `?` is a question for an agent, even when it has shell characters in it
/// (`what is 5 > 3?`) or its first word is a command (`which email came last?`).
pub const INTERROGATIVES: &[&str] = &[
    "am", "are", "can", "could", "did", "do", "does", "has", "have", "how", "is", "may", "might",
    "shall", "should", "was", "were", "what", "what's", "when", "where", "which", "who", "who's",
    "whom", "whose", "why", "will", "would",
];

/// Commands (builtins or common programs) that are also everyday English words a request
/// starts with. For these, and only these, the rest of the prompt decides: prose after
/// them (`make me a sandwich`, `find the email from Bob`) goes to an agent, arguments
/// (`make -j4`, `find . -name x`) to the shell.
pub const AMBIGUOUS: &[&str] = &[
    "at", "break", "cal", "command", "continue", "date", "export", "file", "find", "fold", "free",
    "head", "help", "history", "join", "kill", "last", "less", "link", "locate", "look", "mail",
    "make", "man", "more", "open", "paste", "print", "read", "return", "say", "script", "see",
    "send", "set", "shift", "show", "sort", "source", "split", "tail", "talk", "tell", "test",
    "time", "top", "touch", "trap", "type", "wait", "watch", "which", "who", "write", "yes",
];

/// Function words of English: articles, pronouns, prepositions, conjunctions, auxiliaries
/// and politeness. Two or more words after an ambiguous command with one of these among
/// them read as prose; shell arguments almost never contain them.
pub const FUNCTION_WORDS: &[&str] = &[
    "a", "about", "after", "all", "am", "an", "and", "any", "are", "as", "at", "be", "before",
    "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he",
    "her", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "i'm", "last", "me",
    "my", "no", "not", "of", "on", "or", "our", "out", "please", "she", "so", "some", "that",
    "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "today",
    "tomorrow", "up", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why",
    "will", "with", "would", "you", "your",
];

/// Whether `word` (any case) is in `list`.
pub fn contains(list: &[&str], word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    list.contains(&lower.as_str())
}
