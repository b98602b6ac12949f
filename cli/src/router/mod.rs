//! The router: decides whether a prompt typed at the terminal is a shell command or a
//! request for an agent (`router.default_opening`), by rules tried in a fixed order
//! (`docs/router.md`). Pure: the only outside knowledge is an injected [`Env`] (which
//! commands are on `$PATH`) and the config's lists ([`Lists`]), so a table of prompts tests
//! every rule deterministically.

pub mod params;
mod words;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

/// Longest prompt the router reads, in bytes (a terminal line, not a document).
pub const PROMPT_BYTES_MAX: usize = 8 * 1024;
/// Most entries read from each of `allowlist`, `denylist` and `known_commands`.
pub const LIST_ENTRIES_MAX: usize = 1024;
/// Most `$PATH` directories searched.
pub const PATH_DIRS_MAX: usize = 256;

/// Where a prompt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To `/bin/sh -c` (exit 10 from `rlp route`).
    Shell,
    /// To the default opening, as its params (exit 11 from `rlp route`).
    Agent,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Shell => "shell",
            Route::Agent => "agent",
        }
    }
}

/// The rules, in the order they are tried. The first that matches decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    DenyList,
    AllowList,
    Question,
    ShellSyntax,
    CommandThenProse,
    Builtin,
    Path,
    OnPath,
    KnownCommand,
    Prose,
    Default,
}

impl Rule {
    /// Every rule, in evaluation order.
    pub const ORDER: [Rule; 11] = [
        Rule::DenyList,
        Rule::AllowList,
        Rule::Question,
        Rule::ShellSyntax,
        Rule::CommandThenProse,
        Rule::Builtin,
        Rule::Path,
        Rule::OnPath,
        Rule::KnownCommand,
        Rule::Prose,
        Rule::Default,
    ];

    /// The rule's name in `--json` and `rlp why`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::DenyList => "denylist",
            Rule::AllowList => "allowlist",
            Rule::Question => "question",
            Rule::ShellSyntax => "shell_syntax",
            Rule::CommandThenProse => "command_then_prose",
            Rule::Builtin => "builtin",
            Rule::Path => "path",
            Rule::OnPath => "on_path",
            Rule::KnownCommand => "known_command",
            Rule::Prose => "prose",
            Rule::Default => "default",
        }
    }

    /// What the rule says, whatever the prompt.
    pub fn text(self) -> &'static str {
        match self {
            Rule::DenyList => "a router.denylist entry matches: never the shell",
            Rule::AllowList => "a router.allowlist entry matches: always the shell",
            Rule::Question => {
                "starts with a question word and ends with '?': a question for an agent"
            }
            Rule::ShellSyntax => {
                "shell syntax: a pipe, redirection, &&/||, $VAR, $(…), backquote, assignment \
                 or subshell (';' and '&' only after a known command)"
            }
            Rule::CommandThenProse => {
                "a command that is also an English word, followed by prose: an agent"
            }
            Rule::Builtin => "the first word is a shell builtin or keyword",
            Rule::Path => "the first word is a path (/x, ./x, ../x, ~/x, dir/x)",
            Rule::OnPath => "the first word is a program on $PATH",
            Rule::KnownCommand => "the first word is in router.known_commands",
            Rule::Prose => "the first word is no command and more words follow: prose",
            Rule::Default => "nothing above matched: an agent",
        }
    }

    /// The route this rule gives when it matches.
    pub fn route(self) -> Route {
        match self {
            Rule::AllowList
            | Rule::ShellSyntax
            | Rule::Builtin
            | Rule::Path
            | Rule::OnPath
            | Rule::KnownCommand => Route::Shell,
            Rule::DenyList
            | Rule::Question
            | Rule::CommandThenProse
            | Rule::Prose
            | Rule::Default => Route::Agent,
        }
    }
}

/// One rule as tried on one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub rule: Rule,
    pub matched: bool,
    /// Why it matched or not, for this prompt.
    pub note: String,
}

/// The router's answer: the route, the rule that decided, and every rule tried up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: Route,
    pub rule: Rule,
    /// Why the deciding rule matched this prompt.
    pub detail: String,
    /// The rules tried, in order; the last one decided.
    pub steps: Vec<Step>,
}

/// The config lists (`router.allowlist`, `denylist`, `known_commands`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    pub allowlist: Vec<String>,
    pub denylist: Vec<String>,
    pub known_commands: Vec<String>,
}

/// What the router may know of the machine: where a command is on `$PATH`.
pub struct Env<'a> {
    pub which: &'a dyn Fn(&str) -> Option<PathBuf>,
}

/// Why a prompt could not be routed (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptError {
    Empty,
    TooLong { len: usize },
    Nul,
}

impl std::fmt::Display for PromptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptError::Empty => f.write_str(
                "empty prompt: say what to run or what you want, e.g. rlp route \"ls -l\"",
            ),
            PromptError::TooLong { len } => write!(
                f,
                "the prompt is {len} bytes, above the {PROMPT_BYTES_MAX}-byte limit"
            ),
            PromptError::Nul => f.write_str("the prompt has a NUL byte"),
        }
    }
}

impl std::error::Error for PromptError {}

/// What the first word of a prompt is, found once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Head {
    Builtin,
    Path,
    OnPath(PathBuf),
    Known,
    Unknown,
}

impl Head {
    fn is_command(&self) -> bool {
        !matches!(self, Head::Unknown)
    }
}

/// Decides where `prompt` goes.
pub fn decide(prompt: &str, lists: &Lists, env: &Env<'_>) -> Result<Decision, PromptError> {
    if prompt.len() > PROMPT_BYTES_MAX {
        return Err(PromptError::TooLong { len: prompt.len() });
    }
    if prompt.contains('\0') {
        return Err(PromptError::Nul);
    }
    let prompt = prompt.trim();
    let words = split_words(prompt);
    let Some(first) = words.first() else {
        return Err(PromptError::Empty);
    };
    let head = head(first, lists, env);
    let mut steps = Vec::with_capacity(Rule::ORDER.len());
    for rule in Rule::ORDER {
        let (matched, note) = check(rule, prompt, &words, &head, lists);
        steps.push(Step {
            rule,
            matched,
            note: note.clone(),
        });
        if matched {
            return Ok(Decision {
                route: rule.route(),
                rule,
                detail: note,
                steps,
            });
        }
    }
    unreachable!("Rule::Default always matches")
}

/// Tries one rule: whether it matches, and why (or why not).
fn check(rule: Rule, prompt: &str, words: &[String], head: &Head, lists: &Lists) -> (bool, String) {
    let first = words[0].as_str();
    let args = &words[1..];
    match rule {
        Rule::DenyList => list_match(&lists.denylist, prompt, first, "router.denylist"),
        Rule::AllowList => list_match(&lists.allowlist, prompt, first, "router.allowlist"),
        Rule::Question => {
            let question = words.len() >= 2
                && prompt.ends_with('?')
                && words::contains(words::INTERROGATIVES, first);
            let note = if question {
                format!("{first:?} … '?' is a question")
            } else {
                "not a question (needs a question word first, '?' last, two words or more)".into()
            };
            (question, note)
        }
        Rule::ShellSyntax => match shell_syntax(prompt, first, head.is_command()) {
            Some(what) => (true, what),
            None => (false, "no shell operators or expansions".into()),
        },
        Rule::CommandThenProse => {
            let ambiguous = head.is_command() && words::contains(words::AMBIGUOUS, first);
            if !ambiguous {
                let note = format!("{first:?} is not a command that is also an English word");
                return (false, note);
            }
            if reads_as_prose(args) {
                let rest = args.join(" ");
                let note = format!("{first:?} is a command and an English word; {rest:?} is prose");
                (true, note)
            } else {
                let note = format!("{first:?} is followed by arguments, not prose");
                (false, note)
            }
        }
        Rule::Builtin => head_note(*head == Head::Builtin, first, "a shell builtin"),
        Rule::Path => head_note(*head == Head::Path, first, "a path"),
        Rule::OnPath => match head {
            Head::OnPath(at) => (true, format!("{first:?} is {}", at.display())),
            _ => (false, format!("{first:?} is not on $PATH")),
        },
        Rule::KnownCommand => head_note(*head == Head::Known, first, "in router.known_commands"),
        Rule::Prose => {
            let prose = words.len() >= 2;
            let note = if prose {
                format!(
                    "{first:?} is no command and {} words follow",
                    words.len() - 1
                )
            } else {
                "one word only".into()
            };
            (prose, note)
        }
        Rule::Default => (true, format!("{first:?} is no command the shell knows")),
    }
}

fn head_note(matched: bool, first: &str, what: &str) -> (bool, String) {
    let not = if matched { "" } else { "not " };
    (matched, format!("{first:?} is {not}{what}"))
}

/// What the first word is: a builtin first (`echo` is also `/bin/echo`), then a path,
/// then a program on `$PATH`, then an entry of `known_commands` — the order of the rules.
fn head(first: &str, lists: &Lists, env: &Env<'_>) -> Head {
    if words::BUILTINS.contains(&first) {
        return Head::Builtin;
    }
    if is_path(first) {
        return Head::Path;
    }
    if !is_command_name(first) {
        return Head::Unknown;
    }
    if let Some(at) = (env.which)(first) {
        return Head::OnPath(at);
    }
    let known = lists.known_commands.iter().take(LIST_ENTRIES_MAX);
    if known.clone().any(|k| k.trim() == first) {
        return Head::Known;
    }
    Head::Unknown
}

/// A word a command could be named: no quotes, no shell characters, no trailing
/// punctuation of prose (`Hello,` `Thanks!`).
fn is_command_name(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        && !word.ends_with('.')
}

fn is_path(word: &str) -> bool {
    word.starts_with('/')
        || word.starts_with("./")
        || word.starts_with("../")
        || word == "~"
        || word.starts_with("~/")
        || (word.contains('/') && is_path_chars(word))
}

fn is_path_chars(word: &str) -> bool {
    word.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '+' | '~'))
}

/// Whether an allow- or denylist entry matches: a one-word entry without glob characters
/// matches the first word; any other entry is a glob (`*` any run, `?` one character)
/// over the whole trimmed prompt.
fn list_match(list: &[String], prompt: &str, first: &str, name: &str) -> (bool, String) {
    for entry in list.iter().take(LIST_ENTRIES_MAX) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let plain = !entry.contains(['*', '?', ' ', '\t']);
        let hit = if plain {
            entry == first
        } else {
            glob(entry.as_bytes(), prompt.as_bytes())
        };
        if hit {
            return (true, format!("{name} entry {entry:?} matches"));
        }
    }
    let note = if list.is_empty() {
        format!("{name} is empty")
    } else {
        format!("no {name} entry matches")
    };
    (false, note)
}

/// `*` and `?` globbing over the whole prompt (`runloop_bundle::glob`, shared with the
/// trust roots' scopes).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    runloop_bundle::glob::matches(pattern, text)
}

/// Words as a shell would split them, quotes kept in the word (`'a b'` is one word). An
/// apostrophe between letters (`don't`, `Bob's`) is prose, not a quote.
fn split_words(prompt: &str) -> Vec<String> {
    let chars: Vec<char> = prompt.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                word.push(c);
            }
            Some(_) => word.push(c),
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None if (c == '"' || c == '\'') && !is_apostrophe(&chars, i) => {
                quote = Some(c);
                word.push(c);
            }
            None => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn is_apostrophe(chars: &[char], i: usize) -> bool {
    chars[i] == '\''
        && i > 0
        && chars[i - 1].is_alphabetic()
        && chars
            .get(i + 1)
            .is_some_and(|c| c.is_alphabetic() || c.is_whitespace())
}

/// The first shell operator or expansion outside quotes, described; `None` when there is
/// none. `;` and `&` are common in prose, so they count only after a known command.
fn shell_syntax(prompt: &str, first: &str, head_is_command: bool) -> Option<String> {
    if let Some((name, _)) = first.split_once('=')
        && is_identifier(name)
    {
        return Some(format!("{first:?} assigns a variable"));
    }
    if first.starts_with(['(', '{']) && first != "{" {
        return Some(format!("{first:?} opens a subshell or group"));
    }
    let chars: Vec<char> = prompt.chars().collect();
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        match quote {
            Some('\'') if c == '\'' => quote = None,
            Some('\'') => continue,
            Some(_) if c == '"' => quote = None,
            None if (c == '"' || c == '\'') && !is_apostrophe(&chars, i) => quote = Some(c),
            _ => {}
        }
        let found = match c {
            '|' if quote.is_none() => Some(if next == Some('|') { "||" } else { "a pipe |" }),
            '>' | '<' if quote.is_none() => Some("a redirection"),
            '&' if quote.is_none() && next == Some('&') => Some("&&"),
            '&' if quote.is_none() && head_is_command => Some("& (background)"),
            ';' if quote.is_none() && head_is_command => Some("; (a command list)"),
            '`' => Some("a backquote substitution"),
            '$' if next == Some('(') => Some("a $(…) substitution"),
            '$' if next == Some('{') => Some("a ${…} expansion"),
            '$' if next.is_some_and(|n| n.is_ascii_alphabetic() || n == '_') => {
                Some("a $VAR expansion")
            }
            _ => None,
        };
        if let Some(what) = found {
            return Some(format!("{what} at byte {}", char_offset(prompt, i)));
        }
    }
    None
}

fn char_offset(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(b, _)| b)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the words after an ambiguous command read as prose: no word looks like a shell
/// argument (a flag, a path, a glob, a quote, `key=value`, a file name with an
/// extension), and either two words or more with a function word among them, or a last
/// word ending in `?`.
fn reads_as_prose(args: &[String]) -> bool {
    if args.is_empty() || args.iter().any(|a| looks_like_argument(a)) {
        return false;
    }
    let last_is_question = args.last().is_some_and(|a| a.ends_with('?'));
    let function_words = args
        .iter()
        .filter(|a| words::contains(words::FUNCTION_WORDS, strip_punctuation(a)))
        .count();
    last_is_question || (args.len() >= 2 && function_words >= 1)
}

fn strip_punctuation(word: &str) -> &str {
    word.trim_end_matches(['.', ',', '!', '?', ':'])
}

fn looks_like_argument(word: &str) -> bool {
    let word = strip_punctuation(word);
    word.starts_with('-')
        || word.starts_with(['"', '\'', '~', '.'])
        || word.contains(['/', '=', '*', '[', '\\'])
        || has_extension(word)
}

/// `notes.txt`, `Makefile.am`: a dot inside a word with letters on both sides (an email
/// address's domain is prose: `bob@example.com`).
fn has_extension(word: &str) -> bool {
    if word.contains('@') {
        return false;
    }
    match word.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && !ext.is_empty()
                && ext.len() <= 5
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// The real `$PATH` lookup: the first directory in `path` (colon-separated, at most
/// [`PATH_DIRS_MAX`]) holding an executable regular file named `name`.
pub fn which_in(path: &str, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .take(PATH_DIRS_MAX)
        .filter(|dir| !dir.is_empty())
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
