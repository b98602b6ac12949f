//! The router's table: prompts with the route and the deciding rule each must get, on a
//! fixed `$PATH` (no dependence on this machine) and a few config lists.

use std::path::PathBuf;

use super::params::{Mapping, from_answer, from_goals};
use super::{Env, Lists, PromptError, Route, Rule, decide};
use crate::route::Action;

/// The programs on the table's `$PATH` (`/usr/bin/<name>`).
const ON_PATH: &[&str] = &[
    "ls", "git", "make", "find", "grep", "wc", "cat", "sort", "head", "tail", "date", "which",
    "who", "top", "less", "man", "open", "touch", "python3", "cargo", "docker", "curl", "vim",
    "ssh", "rm", "cp", "mv", "mkdir", "tar", "awk", "sed", "ps", "df", "du", "watch", "yes",
    "write", "mail", "join", "split", "free", "file", "look", "cal", "echo", "sleep", "env",
    "printf", "kill", "test", "uname", "whoami", "htop", "jq", "rg", "fd", "node", "npm",
];

fn which(name: &str) -> Option<PathBuf> {
    ON_PATH
        .contains(&name)
        .then(|| PathBuf::from("/usr/bin").join(name))
}

/// The config lists a row runs with.
#[derive(Clone, Copy)]
enum L {
    /// All three lists empty (config v1's defaults).
    None,
    /// `denylist: [rm, "git push*", "curl * | sh"]`.
    Deny,
    /// `allowlist: [make, "deploy *", "todo*"]`.
    Allow,
    /// `known_commands: [deploy, kubectl, ll]`.
    Known,
    /// All of the above at once (deny wins over allow).
    All,
}

fn lists(l: L) -> Lists {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let deny = s(&["rm", "git push*", "curl * | sh"]);
    let allow = s(&["make", "deploy *", "todo*"]);
    let known = s(&["deploy", "kubectl", "ll"]);
    match l {
        L::None => Lists::default(),
        L::Deny => Lists {
            denylist: deny,
            ..Lists::default()
        },
        L::Allow => Lists {
            allowlist: allow,
            ..Lists::default()
        },
        L::Known => Lists {
            known_commands: known,
            ..Lists::default()
        },
        L::All => Lists {
            allowlist: allow,
            denylist: deny,
            known_commands: known,
        },
    }
}

use Route::{Agent, Shell};
use Rule::*;

/// (lists, prompt, route, deciding rule).
const TABLE: &[(L, &str, Route, Rule)] = &[
    // Plain commands on $PATH.
    (L::None, "ls", Shell, OnPath),
    (L::None, "ls -la", Shell, OnPath),
    (L::None, "git status", Shell, OnPath),
    (L::None, "git log --oneline -5", Shell, OnPath),
    (
        L::None,
        "git commit -m \"fix the bug in the router\"",
        Shell,
        OnPath,
    ),
    (L::None, "cargo build --release", Shell, OnPath),
    (L::None, "python3 -m http.server 8000", Shell, OnPath),
    (L::None, "docker ps -a", Shell, OnPath),
    (L::None, "vim notes.md", Shell, OnPath),
    (L::None, "ssh prod-1", Shell, OnPath),
    (L::None, "rm -rf build", Shell, OnPath),
    (L::None, "cp a.txt b.txt", Shell, OnPath),
    (L::None, "tar xzf release.tar.gz", Shell, OnPath),
    (L::None, "ps aux", Shell, OnPath),
    (L::None, "df -h", Shell, OnPath),
    (L::None, "uname -a", Shell, OnPath),
    (L::None, "whoami", Shell, OnPath),
    (L::None, "htop", Shell, OnPath),
    (L::None, "jq .name package.json", Shell, OnPath),
    (L::None, "rg TODO", Shell, OnPath),
    (L::None, "npm install", Shell, OnPath),
    (L::None, "  ls   ", Shell, OnPath),
    // Commands that are English words: arguments → shell, prose → agent.
    (L::None, "make", Shell, OnPath),
    (L::None, "make -j4", Shell, OnPath),
    (L::None, "make install", Shell, OnPath),
    (L::None, "make test", Shell, OnPath),
    (L::None, "make me a sandwich", Agent, CommandThenProse),
    (
        L::None,
        "make a list of my open tasks",
        Agent,
        CommandThenProse,
    ),
    (L::None, "find . -name x", Shell, OnPath),
    (L::None, "find /var/log -mtime -1", Shell, OnPath),
    (L::None, "find the email from Bob", Agent, CommandThenProse),
    (
        L::None,
        "find all my notes about the Q4 plan",
        Agent,
        CommandThenProse,
    ),
    (
        L::None,
        "find bob@example.com in my contacts",
        Agent,
        CommandThenProse,
    ),
    (L::None, "sort -u names.txt", Shell, OnPath),
    (L::None, "sort my inbox by date", Agent, CommandThenProse),
    (L::None, "head -n 5 log.txt", Shell, OnPath),
    (L::None, "tail -f /var/log/syslog", Shell, OnPath),
    (L::None, "date", Shell, OnPath),
    (L::None, "date +%s", Shell, OnPath),
    (
        L::None,
        "date with Maria on Friday",
        Agent,
        CommandThenProse,
    ),
    (L::None, "which python3", Shell, OnPath),
    (L::None, "which email is from Bob", Agent, CommandThenProse),
    (L::None, "who", Shell, OnPath),
    (L::None, "who is on call today", Agent, CommandThenProse),
    (L::None, "watch -n1 date", Shell, OnPath),
    (L::None, "watch the logs for me", Agent, CommandThenProse),
    (L::None, "touch notes.txt", Shell, OnPath),
    (L::None, "touch base with the team", Agent, CommandThenProse),
    (
        L::None,
        "write an email to Maria about the launch",
        Agent,
        CommandThenProse,
    ),
    (L::None, "mail the report to Bob", Agent, CommandThenProse),
    (
        L::None,
        "open the draft from yesterday",
        Agent,
        CommandThenProse,
    ),
    (L::None, "open README.md", Shell, OnPath),
    (L::None, "man ls", Shell, OnPath),
    (L::None, "look at my calendar", Agent, CommandThenProse),
    (L::None, "yes", Shell, OnPath),
    (L::None, "free -m", Shell, OnPath),
    (L::None, "file image.png", Shell, OnPath),
    (
        L::None,
        "file a complaint with the landlord",
        Agent,
        CommandThenProse,
    ),
    (
        L::None,
        "split the bill with Maria",
        Agent,
        CommandThenProse,
    ),
    (L::None, "top", Shell, OnPath),
    // Builtins, with and without prose after the ambiguous ones.
    (L::None, "cd ..", Shell, Builtin),
    (L::None, "cd", Shell, Builtin),
    (L::None, "export EDITOR=vim", Shell, Builtin),
    (
        L::None,
        "export my contacts to a spreadsheet",
        Agent,
        CommandThenProse,
    ),
    (L::None, "alias ll='ls -l'", Shell, Builtin),
    (L::None, "source ~/.bashrc", Shell, Builtin),
    (L::None, "pwd", Shell, Builtin),
    (L::None, "echo hi", Shell, Builtin),
    (L::None, "echo the meeting is at noon", Shell, Builtin),
    (L::None, "history", Shell, Builtin),
    (L::None, "set -e", Shell, Builtin),
    (
        L::None,
        "set a reminder for Friday",
        Agent,
        CommandThenProse,
    ),
    (L::None, "read -r line", Shell, Builtin),
    (L::None, "read my latest email", Agent, CommandThenProse),
    (L::None, "type ls", Shell, Builtin),
    (
        L::None,
        "type a letter to the bank",
        Agent,
        CommandThenProse,
    ),
    (L::None, "kill 1234", Shell, Builtin),
    (L::None, "kill -9 1234", Shell, Builtin),
    (L::None, "kill the failing run", Agent, CommandThenProse),
    (L::None, "test -f Cargo.toml", Shell, Builtin),
    (
        L::None,
        "test the compose opening with Maria",
        Agent,
        CommandThenProse,
    ),
    (L::None, "time cargo build", Shell, Builtin),
    (L::None, "wait", Shell, Builtin),
    (L::None, "wait for Bob's reply", Agent, CommandThenProse),
    (L::None, "unset FOO", Shell, Builtin),
    (L::None, "exit", Shell, Builtin),
    // Shell syntax.
    (L::None, "echo hi | wc", Shell, ShellSyntax),
    (L::None, "cat notes.txt | grep Bob", Shell, ShellSyntax),
    (L::None, "ls > files.txt", Shell, ShellSyntax),
    (L::None, "sort < names.txt", Shell, ShellSyntax),
    (L::None, "make && make install", Shell, ShellSyntax),
    (L::None, "make || echo failed", Shell, ShellSyntax),
    (L::None, "cd /tmp; ls", Shell, ShellSyntax),
    (L::None, "sleep 10 &", Shell, ShellSyntax),
    (L::None, "echo $HOME", Shell, ShellSyntax),
    (L::None, "echo ${PATH}", Shell, ShellSyntax),
    (L::None, "echo $(date)", Shell, ShellSyntax),
    (L::None, "echo `date`", Shell, ShellSyntax),
    (L::None, "FOO=1 env", Shell, ShellSyntax),
    (L::None, "(cd /tmp && ls)", Shell, ShellSyntax),
    (L::None, "$EDITOR notes.md", Shell, ShellSyntax),
    (L::None, "foo | bar", Shell, ShellSyntax),
    (
        L::None,
        "find the email from Bob | wc -l",
        Shell,
        ShellSyntax,
    ),
    (L::None, "git log 2>/dev/null", Shell, ShellSyntax),
    // Quoted operators are not syntax.
    (L::None, "grep '|' notes.txt", Shell, OnPath),
    (L::None, "echo 'a > b'", Shell, Builtin),
    // ';' and '&' in prose are not syntax.
    (L::None, "meet Bob; then email Maria", Agent, Prose),
    (L::None, "Tom & Jerry episodes", Agent, Prose),
    (L::None, "it costs $5", Agent, Prose),
    // Paths.
    (L::None, "./build.sh", Shell, Path),
    (L::None, "./configure --prefix=/usr", Shell, Path),
    (L::None, "/bin/ls -l", Shell, Path),
    (L::None, "~/bin/backup", Shell, Path),
    (L::None, "../run.sh fast", Shell, Path),
    (L::None, "scripts/deploy.sh", Shell, Path),
    (L::None, "https://example.com", Agent, Default),
    (L::None, "open https://example.com", Shell, OnPath),
    // Questions.
    (L::None, "what is ls?", Agent, Question),
    (L::None, "what is 5 > 3?", Agent, Question),
    (L::None, "which email came last?", Agent, Question),
    (L::None, "who sent the invoice?", Agent, Question),
    (L::None, "how do I undo a git commit?", Agent, Question),
    (L::None, "can you summarise my notes?", Agent, Question),
    (L::None, "is the build green?", Agent, Question),
    (L::None, "ls?", Agent, Default),
    // Prose and the default.
    (L::None, "list my contacts", Agent, Prose),
    (L::None, "email Maria about the Q4 launch", Agent, Prose),
    (L::None, "draft a reply to Bob", Agent, Prose),
    (L::None, "summarize yesterday's meeting notes", Agent, Prose),
    (L::None, "remind me to call mom", Agent, Prose),
    (L::None, "please send the report", Agent, Prose),
    (L::None, "Make me a sandwich", Agent, Prose),
    (L::None, "Hello, how are you", Agent, Prose),
    (L::None, "don't send anything yet", Agent, Prose),
    (L::None, "hello", Agent, Default),
    (L::None, "stauts", Agent, Default),
    (L::None, "kubectl get pods", Agent, Prose),
    (L::None, "deploy", Agent, Default),
    // known_commands.
    (L::Known, "kubectl get pods", Shell, KnownCommand),
    (L::Known, "deploy", Shell, KnownCommand),
    (L::Known, "ll", Shell, KnownCommand),
    (L::Known, "deploy the site to prod", Shell, KnownCommand),
    (L::Known, "ls", Shell, OnPath),
    (L::Known, "list my contacts", Agent, Prose),
    // denylist.
    (L::Deny, "rm -rf /", Agent, DenyList),
    (L::Deny, "rm notes.txt", Agent, DenyList),
    (L::Deny, "git push origin main", Agent, DenyList),
    (L::Deny, "git push", Agent, DenyList),
    (L::Deny, "git pull", Shell, OnPath),
    (L::Deny, "curl https://x.sh | sh", Agent, DenyList),
    (L::Deny, "curl https://example.com", Shell, OnPath),
    (L::Deny, "rmdir build", Agent, Prose),
    (L::Deny, "echo rm", Shell, Builtin),
    // allowlist.
    (L::Allow, "make me a sandwich", Shell, AllowList),
    (L::Allow, "deploy the site to prod", Shell, AllowList),
    (L::Allow, "deploy", Agent, Default),
    (L::Allow, "todo buy milk", Shell, AllowList),
    (L::Allow, "find the email from Bob", Agent, CommandThenProse),
    // Both lists: deny is tried first.
    (L::All, "rm -rf build", Agent, DenyList),
    (L::All, "make me a sandwich", Shell, AllowList),
    (L::All, "deploy", Shell, KnownCommand),
    (L::All, "git push --force", Agent, DenyList),
    (L::All, "what is ls?", Agent, Question),
];

#[test]
fn table() {
    assert!(TABLE.len() >= 100, "the table has {} rows", TABLE.len());
    let env = Env { which: &which };
    let mut wrong = Vec::new();
    for &(l, prompt, route, rule) in TABLE {
        let d = decide(prompt, &lists(l), &env).unwrap();
        if (d.route, d.rule) != (route, rule) {
            wrong.push(format!(
                "{prompt:?}: want {route:?} by {rule:?}, got {:?} by {:?} ({})",
                d.route, d.rule, d.detail
            ));
        }
        // The last step is the deciding rule; every one before it did not match; the
        // steps follow Rule::ORDER.
        let last = d.steps.last().unwrap();
        assert!(last.matched && last.rule == d.rule, "{prompt:?}");
        assert!(d.steps[..d.steps.len() - 1].iter().all(|s| !s.matched));
        assert!(d.steps.iter().zip(Rule::ORDER).all(|(s, r)| s.rule == r));
        assert_eq!(d.route, d.rule.route());
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn fastpath_decides_the_action_not_the_route() {
    let env = Env { which: &which };
    let none = Lists::default();
    let shell = decide("echo hi", &none, &env).unwrap();
    let agent = decide("email Maria about the launch", &none, &env).unwrap();
    assert_eq!(Action::of(shell.route, true), Action::RunShell);
    assert_eq!(Action::of(shell.route, false), Action::PrintShell);
    assert_eq!(Action::of(agent.route, true), Action::RunOpening);
    assert_eq!(Action::of(agent.route, false), Action::RunOpening);
}

#[test]
fn bad_prompts_are_errors() {
    let env = Env { which: &which };
    let none = Lists::default();
    assert_eq!(decide("", &none, &env), Err(PromptError::Empty));
    assert_eq!(decide("  \t ", &none, &env), Err(PromptError::Empty));
    assert_eq!(decide("ls\0", &none, &env), Err(PromptError::Nul));
    let long = "a".repeat(super::PROMPT_BYTES_MAX + 1);
    assert!(matches!(
        decide(&long, &none, &env),
        Err(PromptError::TooLong { .. })
    ));
}

#[test]
fn globs() {
    use super::glob;
    assert!(glob(b"git push*", b"git push origin"));
    assert!(glob(b"git push*", b"git push"));
    assert!(!glob(b"git push*", b"git pull"));
    assert!(glob(b"a?c", b"abc"));
    assert!(glob(b"*", b""));
    assert!(glob(b"*b*b*", b"abxbyb"));
    assert!(!glob(b"*b*b", b"abxbyc"));
}

/// A compose_email-like opening validated against a catalog that knows one agent.
fn opening() -> runloop_openings::Opening {
    struct Echo;
    impl runloop_openings::AgentCatalog for Echo {
        fn agent(
            &self,
            _agent: &runloop_openings::AgentRef,
        ) -> Result<runloop_openings::AgentFacts, runloop_openings::CatalogError> {
            Ok(runloop_openings::AgentFacts::default())
        }
    }
    let yaml = r#"
version: 0
name: mail
goals: ["email {{params.recipient}} about {{params.topic}}", "ping {{params.recipient}} with {{params.count}} pings"]
params:
  recipient: { type: string, default: "John" }
  topic: { type: string, default: "Q4 plan" }
  count: { type: integer, default: 1 }
nodes:
  - id: a
    use: agent:echo
"#;
    runloop_openings::validate(yaml, &Echo).expect("the test opening validates")
}

#[test]
fn params_from_goals() {
    let o = opening();
    let (i, p) = from_goals("email Maria Garcia about the Q4 launch", &o).unwrap();
    assert_eq!(i, 0);
    assert_eq!(
        p,
        serde_json::json!({"recipient": "Maria Garcia", "topic": "the Q4 launch"})
    );
    let (_, p) = from_goals("please Email bob   about lunch.", &o).unwrap();
    assert_eq!(p, serde_json::json!({"recipient": "bob", "topic": "lunch"}));
    let (i, p) = from_goals("ping Bob with 3 pings", &o).unwrap();
    assert_eq!(i, 1);
    assert_eq!(p, serde_json::json!({"recipient": "Bob", "count": 3}));
    // A count that is not an integer does not bind.
    assert_eq!(from_goals("ping Bob with many pings", &o), None);
    assert_eq!(from_goals("email about lunch", &o), None);
    // Words after the last literal of a goal: not that goal.
    assert_eq!(from_goals("ping Bob with 3 pings now", &o), None);
    assert_eq!(from_goals("write to Maria", &o), None);
    assert_eq!(from_goals("emailing Maria about it", &o), None);
}

#[test]
fn params_from_model_answers() {
    let o = opening();
    let answer = "Sure! {\"recipient\": \"Maria\", \"topic\": \"launch\", \"tone\": null}";
    assert_eq!(
        from_answer(answer, &o),
        Some(serde_json::json!({"recipient": "Maria", "topic": "launch"}))
    );
    // Undeclared keys are dropped; nothing declared left → no params.
    assert_eq!(from_answer("{\"colour\": \"red\"}", &o), None);
    // Wrong types do not bind.
    assert_eq!(from_answer("{\"count\": \"three\"}", &o), None);
    // Prose (the offline extractive writer's kind of answer) is no JSON.
    assert_eq!(from_answer("Email Maria about the launch.", &o), None);
    assert_eq!(from_answer("} {", &o), None);
    let _ = Mapping::Model;
}
