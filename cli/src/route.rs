//! `rlp route`, `rlp why` and `rlp "<prompt>"`: the router (`crate::router`) at the
//! terminal. `route` decides (exit 10 shell, 11 agent), `why` explains every rule tried,
//! and a free prompt runs the decision: the shell through `/bin/sh -c` when
//! `router.fastpath_shell` is on (else the command is printed, exit 10), or
//! `router.default_opening` with the prompt turned into its params (the broker's model
//! first, the opening's goal templates read backwards second) through `rlp run`'s code.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;
use runloop_kernel::config::{Config, Mode};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::kernel_client::{self, KernelArgs};
use crate::router::params::{self, Mapping};
use crate::router::{self, Decision, Env, Lists, Route, Rule};

/// Exit status of `rlp route` (and of a shell prompt not run) for the shell.
pub const EXIT_SHELL: u8 = 10;
/// Exit status of `rlp route` for an agent.
pub const EXIT_AGENT: u8 = 11;
/// Tokens the model may spend turning a prompt into params.
const PARAMS_TOKENS_MAX: u32 = 400;
/// The opening a prompt goes to when the config does not say (config v1's default).
const DEFAULT_OPENING: &str = "compose_email";
/// The openings shipped in this build's checkout (absent in an installed build).
const CHECKOUT_OPENINGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/openings");

/// `rlp route`.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The prompt, as one argument (quote it): a command line or a request in words.
    #[arg(allow_hyphen_values = true)]
    pub prompt: String,
    /// Print `{prompt, route, rule, rule_text, detail, action, fastpath_shell,
    /// default_opening, steps:[{rule, matched, note}]}`.
    #[arg(long)]
    pub json: bool,
    /// Also run the decision, as `rlp "<prompt>"` does (forces routing for a prompt whose
    /// first word is an rlp subcommand, e.g. `rlp route --run "status of my order"`).
    #[arg(long, conflicts_with = "json")]
    pub run: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `rlp why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The prompt, as one argument (quote it).
    #[arg(allow_hyphen_values = true)]
    pub prompt: String,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// What a decision does when run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `/bin/sh -c <prompt>` (fastpath on).
    RunShell,
    /// Print the command, run nothing, exit 10 (fastpath off).
    PrintShell,
    /// Run the default opening with the prompt as its params.
    RunOpening,
}

impl Action {
    pub fn of(route: Route, fastpath_shell: bool) -> Action {
        match (route, fastpath_shell) {
            (Route::Shell, true) => Action::RunShell,
            (Route::Shell, false) => Action::PrintShell,
            (Route::Agent, _) => Action::RunOpening,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::RunShell => "run_shell",
            Action::PrintShell => "print_shell",
            Action::RunOpening => "run_opening",
        }
    }
}

/// `router:` of config v1, typed.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub fastpath_shell: bool,
    pub default_opening: String,
    pub lists: Lists,
}

impl RouterConfig {
    /// Reads `router:` from the checked config tree; a wrong type is bad input (exit 2).
    pub fn of(config: &Config) -> Result<RouterConfig, Failure> {
        let section = config.tree().get("router");
        let key = |k: &str| section.and_then(|s| s.get(k));
        let bad = |k: &str, want: &str| {
            Failure::invalid("Config", format!("config: router.{k} must be {want}"))
        };
        let fastpath_shell = match key("fastpath_shell") {
            None | Some(serde_norway::Value::Null) => true,
            Some(serde_norway::Value::Bool(b)) => *b,
            Some(_) => return Err(bad("fastpath_shell", "true or false")),
        };
        let default_opening = match key("default_opening") {
            None | Some(serde_norway::Value::Null) => DEFAULT_OPENING.to_owned(),
            Some(serde_norway::Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(_) => return Err(bad("default_opening", "an opening's name or path")),
        };
        let list = |k: &str| -> Result<Vec<String>, Failure> {
            match key(k) {
                None | Some(serde_norway::Value::Null) => Ok(Vec::new()),
                Some(serde_norway::Value::Sequence(items)) => items
                    .iter()
                    .take(router::LIST_ENTRIES_MAX)
                    .map(|v| match v {
                        serde_norway::Value::String(s) => Ok(s.clone()),
                        _ => Err(bad(k, "a list of strings")),
                    })
                    .collect(),
                Some(_) => Err(bad(k, "a list of strings")),
            }
        };
        Ok(RouterConfig {
            fastpath_shell,
            default_opening,
            lists: Lists {
                allowlist: list("allowlist")?,
                denylist: list("denylist")?,
                known_commands: list("known_commands")?,
            },
        })
    }
}

/// The decision on this machine: `$PATH` from the environment.
fn decide(prompt: &str, router: &RouterConfig) -> Result<Decision, Failure> {
    let path = std::env::var("PATH").unwrap_or_default();
    let which = |name: &str| router::which_in(&path, name);
    router::decide(prompt, &router.lists, &Env { which: &which })
        .map_err(|e| Failure::invalid("InvalidPrompt", e.to_string()))
}

fn exit_of(route: Route) -> u8 {
    match route {
        Route::Shell => EXIT_SHELL,
        Route::Agent => EXIT_AGENT,
    }
}

fn decision_json(prompt: &str, d: &Decision, router: &RouterConfig) -> Value {
    let steps: Vec<Value> = d
        .steps
        .iter()
        .map(|s| json!({"rule": s.rule.as_str(), "matched": s.matched, "note": s.note}))
        .collect();
    json!({
        "prompt": prompt,
        "route": d.route.as_str(),
        "rule": d.rule.as_str(),
        "rule_text": d.rule.text(),
        "detail": d.detail,
        "action": Action::of(d.route, router.fastpath_shell).as_str(),
        "fastpath_shell": router.fastpath_shell,
        "default_opening": router.default_opening,
        "steps": steps,
    })
}

/// `rlp route`: exit 10 shell, 11 agent (or what running it gives, with `--run`).
pub fn route(args: RouteArgs) -> Result<u8, Failure> {
    let config = kernel_client::load_config(&args.kernel).map_err(|f| f.json(args.json))?;
    let router = RouterConfig::of(&config).map_err(|f| f.json(args.json))?;
    let d = decide(&args.prompt, &router).map_err(|f| f.json(args.json))?;
    if args.run {
        return execute(&args.prompt, &d, &router, &config, &args.kernel);
    }
    if args.json {
        println!("{}", decision_json(&args.prompt, &d, &router));
    } else {
        println!("{}", d.route.as_str());
        eprintln!("rule {}: {}", d.rule.as_str(), d.detail);
    }
    Ok(exit_of(d.route))
}

/// `rlp why`: every rule tried, in order, and the one that decided. Exit 0.
pub fn why(args: WhyArgs) -> Result<u8, Failure> {
    let config = kernel_client::load_config(&args.kernel)?;
    let router = RouterConfig::of(&config)?;
    let d = decide(&args.prompt, &router)?;
    println!("prompt: {:?}", args.prompt.trim());
    for (i, step) in d.steps.iter().enumerate() {
        let mark = if step.matched { "MATCH" } else { "no" };
        println!(
            "  {:>2}. {:<18} {:<5} {}",
            i + 1,
            step.rule.as_str(),
            mark,
            step.note
        );
    }
    let target = match d.route {
        Route::Shell => "the shell".to_owned(),
        Route::Agent => format!("an agent (opening {})", router.default_opening),
    };
    println!(
        "→ {target}, decided by rule {}: {}",
        d.rule.as_str(),
        d.rule.text()
    );
    let rest: Vec<&str> = Rule::ORDER[d.steps.len()..]
        .iter()
        .map(|r| r.as_str())
        .collect();
    if !rest.is_empty() {
        println!("  not reached: {}", rest.join(", "));
    }
    let action = match Action::of(d.route, router.fastpath_shell) {
        Action::RunShell => "rlp \"<prompt>\" runs it with /bin/sh -c (router.fastpath_shell)",
        Action::PrintShell => {
            "rlp \"<prompt>\" prints it and exits 10 (router.fastpath_shell is off)"
        }
        Action::RunOpening => "rlp \"<prompt>\" runs the opening with the prompt as its params",
    };
    println!("  {action}");
    Ok(0)
}

/// `rlp "<prompt>"` (clap's external subcommand: every word after `rlp`, joined by spaces).
pub fn prompt(words: Vec<OsString>) -> Result<u8, Failure> {
    let words: Vec<String> = words
        .into_iter()
        .map(|w| {
            w.into_string()
                .map_err(|_| Failure::invalid("InvalidPrompt", "the prompt is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let prompt = words.join(" ");
    let kernel = KernelArgs {
        system: false,
        config: None,
    };
    let config = kernel_client::load_config(&kernel)?;
    let router = RouterConfig::of(&config)?;
    let d = decide(&prompt, &router)?;
    execute(&prompt, &d, &router, &config, &kernel)
}

/// Runs a decision; the exit status is the shell's, 10 for a shell command not run, or
/// `rlp run`'s for an opening.
fn execute(
    prompt: &str,
    d: &Decision,
    router: &RouterConfig,
    config: &Config,
    kernel: &KernelArgs,
) -> Result<u8, Failure> {
    match Action::of(d.route, router.fastpath_shell) {
        Action::RunShell => run_shell(prompt.trim()),
        Action::PrintShell => {
            println!("{}", prompt.trim());
            eprintln!(
                "rlp: a shell command (rule {}); router.fastpath_shell is off, so it was not \
                 run",
                d.rule.as_str()
            );
            Ok(EXIT_SHELL)
        }
        Action::RunOpening => run_opening(prompt.trim(), d, router, config, kernel),
    }
}

/// `/bin/sh -c`, stdio inherited; its exit status passed through (128 + N for signal N).
fn run_shell(command: &str) -> Result<u8, Failure> {
    use std::os::unix::process::ExitStatusExt;
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .status()
        .map_err(|e| Failure::io(format!("run /bin/sh: {e}")))?;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(u8::try_from(code).unwrap_or(1))
}

fn run_opening(
    prompt: &str,
    d: &Decision,
    router: &RouterConfig,
    config: &Config,
    kernel: &KernelArgs,
) -> Result<u8, Failure> {
    let file = resolve_opening(&router.default_opening, &config.mode)?;
    let opening = crate::run::load_opening(&file, config)?;
    let (params, mapping) = map_params(prompt, &opening, kernel)?;
    let how = match mapping {
        Mapping::Model => "by the broker's model".to_owned(),
        Mapping::Goal(i) => format!("from goal {} of the opening", i + 1),
        Mapping::NoParams => "(the opening takes none)".to_owned(),
    };
    eprintln!(
        "rlp: an agent prompt (rule {}) → opening {} ({}), params {params} {how}",
        d.rule.as_str(),
        opening.name,
        file.display()
    );
    let args = crate::run::RunArgs {
        file,
        params: Some(params.to_string()),
        param: Vec::new(),
        json: false,
        events: None,
        detach: false,
        approve: false,
        deny: false,
        kernel: kernel.clone(),
    };
    crate::run::run(args).map(|()| 0)
}

/// The prompt as the opening's params: the broker's model first (its JSON answer must
/// bind), then the goal templates; neither → exit 2 with the goals as examples.
fn map_params(
    prompt: &str,
    opening: &runloop_openings::Opening,
    kernel: &KernelArgs,
) -> Result<(Value, Mapping), Failure> {
    if opening.params.is_empty() {
        return Ok((json!({}), Mapping::NoParams));
    }
    let system = params::instruction(opening);
    match crate::model::complete_once(
        kernel.config.clone(),
        system,
        prompt.to_owned(),
        PARAMS_TOKENS_MAX,
    ) {
        Ok(answer) => {
            if let Some(p) = params::from_answer(&answer, opening) {
                return Ok((p, Mapping::Model));
            }
        }
        Err(f) => eprintln!(
            "rlp: the broker could not map the prompt ({}: {}); trying the goals",
            f.name, f.detail
        ),
    }
    if let Some((i, p)) = params::from_goals(prompt, opening) {
        return Ok((p, Mapping::Goal(i)));
    }
    let examples: Vec<String> = opening.goals.iter().map(params::goal_example).collect();
    Err(Failure::invalid(
        "UnmappedPrompt",
        format!(
            "could not turn {prompt:?} into the params of opening {} (the broker's model gave \
             no JSON that binds, and no goal matched); say it like: {}; or run it with \
             explicit params: rlp run <opening> --param name=value",
            opening.name,
            examples.join(" | ")
        ),
    ))
}

/// An opening by path (has a `/` or ends in `.yaml`/`.yml`) or by name: `<name>.yaml` in
/// `<state>/openings`, `/usr/share/runloop/openings`, then this checkout's
/// `examples/openings`.
pub fn resolve_opening(name: &str, mode: &Mode) -> Result<PathBuf, Failure> {
    if name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml") {
        let path = mode.expand(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Failure::invalid(
                "UnknownOpening",
                format!("router.default_opening {}: no such file", path.display()),
            ))
        };
    }
    let dirs = [
        mode.state_dir().join("openings"),
        PathBuf::from("/usr/share/runloop/openings"),
        PathBuf::from(CHECKOUT_OPENINGS),
    ];
    let file = format!("{name}.yaml");
    if let Some(found) = dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) {
        return Ok(std::fs::canonicalize(&found).unwrap_or(found));
    }
    let tried: Vec<String> = dirs.iter().map(|d| display(d)).collect();
    Err(Failure::invalid(
        "UnknownOpening",
        format!(
            "router.default_opening {name:?}: no {file} in {}",
            tried.join(", ")
        ),
    ))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
