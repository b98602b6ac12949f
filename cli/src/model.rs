//! `rlp model ls|complete|embed` and `rlp broker stats`: try a provider by hand, read the broker's accounting.
//!
//! Until the kernel daemon serves
//! `rlp broker stats` over RMP, every command runs an in-process broker and adds its
//! accounting to a ledger file (`<state-dir>/broker/stats.json`) that `rlp broker stats` reads.
//!
//! Exit codes: 0 ok, 1 provider or I/O failure, 2 invalid input or config, 3 refused by a budget.
//! Failures print as `rlp: <Name>: <detail>` (or `{"error","detail"}` on stdout with `--json`).

use crate::failure::{EXIT_FAILURE, EXIT_INVALID, Failure};
use clap::{Args, Subcommand};
use runloop_broker::{
    Answer, Broker, BrokerError, CallContext, ChatMessage, CompleteRequest, EmbedRequest,
    ModelsConfig, Record, Role, SecretResolver, SecretsConfig, Stats, SystemClock,
};
use serde::Deserialize;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest prompt or input read from stdin.
const STDIN_BYTES_MAX: u64 = 4 << 20;
/// Largest config or ledger file read.
const FILE_BYTES_MAX: u64 = 16 << 20;
/// Stream deltas buffered between the broker and the terminal.
const STREAM_DELTAS_MAX: usize = 256;

/// Where the broker's config and state come from.
#[derive(Args, Debug, Clone)]
pub struct BrokerOpts {
    /// Runloop config file; its `models` and `security.secrets` sections are used
    /// [default: $RUNLOOP_CONFIG, else ~/.runloop/config.yaml; a missing default file means the offline provider].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory holding the broker's accounting ledger [default: $RUNLOOP_STATE_DIR, else ~/.runloop].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `rlp model …`
#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// List providers and the models each offers.
    Ls {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: BrokerOpts,
    },
    /// Send one chat completion through the broker.
    Complete(CompleteArgs),
    /// Embed texts through the broker.
    Embed(EmbedArgs),
}

/// `rlp model complete`
#[derive(Args, Debug)]
pub struct CompleteArgs {
    /// The prompt; read from stdin when absent or "-".
    pub prompt: Option<String>,
    /// A system message before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Use this provider id, bypassing the route table.
    #[arg(long)]
    pub provider: Option<String>,
    /// Model name to ask for (routes map it to a provider) [default: models.default].
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub max_tokens: Option<u32>,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print text as it arrives.
    #[arg(long, conflicts_with = "json")]
    pub stream: bool,
    /// Append the replay record (JSON line) to FILE.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Answer only from the records in FILE (JSON lines written by --record).
    #[arg(long, value_name = "FILE", conflicts_with = "provider")]
    pub replay: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: BrokerOpts,
}

/// `rlp model embed`
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Texts to embed; one per stdin line when absent or "-".
    pub texts: Vec<String>,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    #[arg(long, value_name = "FILE", conflicts_with = "provider")]
    pub replay: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: BrokerOpts,
}

/// `rlp broker …`
#[derive(Subcommand, Debug)]
pub enum BrokerCmd {
    /// Requests, tokens, cost, cache hits, errors and latency per provider, opening and agent.
    Stats {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: BrokerOpts,
    },
}

/// Exit status when a budget refuses the request.
pub const EXIT_BUDGET: u8 = 3;

fn invalid(message: impl Into<String>) -> Failure {
    Failure::invalid("InvalidInput", message)
}

fn config_error(message: impl Into<String>) -> Failure {
    Failure::invalid("InvalidConfig", message)
}

fn failed(message: impl Into<String>) -> Failure {
    Failure::io(message)
}

fn broker_failure(e: BrokerError) -> Failure {
    let (name, status) = match &e {
        BrokerError::Invalid(_) => ("InvalidRequest", EXIT_INVALID),
        BrokerError::UnknownProvider { .. } => ("UnknownProvider", EXIT_INVALID),
        // A missing API key is a setup problem, not a provider failure.
        BrokerError::Provider {
            source: runloop_broker::ProviderError::Secret(_),
            ..
        } => ("MissingSecret", EXIT_INVALID),
        BrokerError::Budget(_) => ("BudgetExceeded", EXIT_BUDGET),
        BrokerError::Provider { .. } => ("ProviderFailed", EXIT_FAILURE),
        BrokerError::Busy { .. } | BrokerError::Unavailable => ("BrokerUnavailable", EXIT_FAILURE),
    };
    Failure {
        name: name.to_owned(),
        detail: e.to_string(),
        status,
        json: false,
    }
}

/// Runs `rlp model …`.
pub fn run_model(cmd: ModelCmd) -> Result<(), Failure> {
    let json = match &cmd {
        ModelCmd::Ls { json, .. } => *json,
        ModelCmd::Complete(a) => a.json,
        ModelCmd::Embed(a) => a.json,
    };
    runtime()
        .and_then(|rt| rt.block_on(model(cmd)))
        .map_err(|f| f.json(json))
}

/// Runs `rlp broker …`.
pub fn run_broker(cmd: BrokerCmd) -> Result<(), Failure> {
    match cmd {
        BrokerCmd::Stats { json, opts } => stats(json, &opts).map_err(|f| f.json(json)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("start async runtime: {e}")))
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

fn state_dir(opts: &BrokerOpts) -> PathBuf {
    opts.state_dir
        .clone()
        .or_else(|| std::env::var_os("RUNLOOP_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| home().join(".runloop"))
}

/// Reads `path`, refusing (not cutting) more than [`FILE_BYTES_MAX`] bytes: a silently
/// truncated config or ledger would be read as a different one.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > FILE_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("over FILE_BYTES_MAX ({FILE_BYTES_MAX} bytes)"),
        ));
    }
    Ok(text)
}

/// The two config-v1 sections the broker needs; other sections belong to other parts.
#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    models: ModelsConfig,
    #[serde(default)]
    security: SecurityFile,
}

#[derive(Deserialize, Default)]
struct SecurityFile {
    #[serde(default)]
    secrets: SecretsConfig,
}

fn load_config(opts: &BrokerOpts) -> Result<(ModelsConfig, SecretsConfig), Failure> {
    let explicit = opts
        .config
        .clone()
        .or_else(|| std::env::var_os("RUNLOOP_CONFIG").map(PathBuf::from));
    let path = explicit
        .clone()
        .unwrap_or_else(|| home().join(".runloop/config.yaml"));
    let text = match read_bounded(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(Default::default());
        }
        Err(e) => return Err(config_error(format!("read config {}: {e}", path.display()))),
    };
    let value: serde_norway::Value = serde_norway::from_str(&text)
        .map_err(|e| config_error(format!("config {}: {e}", path.display())))?;
    let file: ConfigFile = serde_norway::from_value(value)
        .map_err(|e| config_error(format!("config {}: {e}", path.display())))?;
    file.models
        .validate()
        .map_err(|e| config_error(format!("config {}: {e}", path.display())))?;
    Ok((file.models, file.security.secrets))
}

fn build(opts: &BrokerOpts, replay: Option<&Path>) -> Result<Broker, Failure> {
    let clock = Arc::new(SystemClock);
    if let Some(path) = replay {
        let records = read_records(path)?;
        return Broker::replay(records, clock).map_err(|e| config_error(e.to_string()));
    }
    let (models, secrets) = load_config(opts)?;
    Broker::new(models, &SecretResolver::from_process_env(secrets), clock)
        .map_err(|e| config_error(e.to_string()))
}

fn read_records(path: &Path) -> Result<Vec<Record>, Failure> {
    let text =
        read_bounded(path).map_err(|e| invalid(format!("read records {}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| invalid(format!("records {} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

fn append_record(path: Option<&Path>, record: &Record) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    let line =
        serde_json::to_string(record).map_err(|e| failed(format!("encode record: {e}")))? + "\n";
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| failed(format!("open records {}: {e}", path.display())))?;
    f.write_all(line.as_bytes())
        .map_err(|e| failed(format!("write records {}: {e}", path.display())))
}

/// Reads stdin, refusing (not cutting) more than [`STDIN_BYTES_MAX`] bytes.
fn read_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .take(STDIN_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| invalid(format!("read stdin: {e}")))?;
    if text.len() as u64 > STDIN_BYTES_MAX {
        return Err(invalid(format!(
            "stdin is over STDIN_BYTES_MAX ({STDIN_BYTES_MAX} bytes)"
        )));
    }
    Ok(text)
}

fn ctx(provider: Option<String>) -> CallContext {
    CallContext {
        agent: Some("rlp".into()),
        provider,
        ..CallContext::default()
    }
}

async fn model(cmd: ModelCmd) -> Result<(), Failure> {
    match cmd {
        ModelCmd::Ls {
            provider,
            json,
            opts,
        } => ls(provider, json, &opts).await,
        ModelCmd::Complete(a) => complete(a).await,
        ModelCmd::Embed(a) => embed(a).await,
    }
}

async fn ls(provider: Option<String>, json: bool, opts: &BrokerOpts) -> Result<(), Failure> {
    let broker = build(opts, None)?;
    let kinds = broker.providers();
    let listed = broker
        .list_models(provider.as_deref())
        .await
        .map_err(broker_failure)?;
    let mut any_failed = false;
    let mut rows = Vec::new();
    for (id, result) in listed {
        let kind = kinds.iter().find(|p| p.id == id).map(|p| p.kind);
        let (models, error) = match result {
            Ok(m) => (m, None),
            Err(e) => {
                any_failed = true;
                (Vec::new(), Some(e.to_string()))
            }
        };
        rows.push(
            serde_json::json!({"provider": id, "kind": kind, "models": models, "error": error}),
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("json values encode")
        );
    } else {
        println!("{:<16} {:<8} MODELS", "PROVIDER", "KIND");
        for r in &rows {
            let models = r["models"].as_array().map(|m| {
                m.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let shown = match r["error"].as_str() {
                Some(e) => format!("error: {e}"),
                None => models.unwrap_or_default(),
            };
            println!(
                "{:<16} {:<8} {shown}",
                r["provider"].as_str().unwrap_or(""),
                r["kind"].as_str().unwrap_or("")
            );
        }
    }
    save_stats(&broker, opts)?;
    if any_failed {
        Err(failed("some providers could not list their models"))
    } else {
        Ok(())
    }
}

async fn complete(a: CompleteArgs) -> Result<(), Failure> {
    let prompt = match a.prompt.as_deref() {
        // A trailing newline from `echo` is not part of the prompt.
        None | Some("-") => read_stdin()?.trim_end_matches(['\n', '\r']).to_owned(),
        Some(p) => p.to_owned(),
    };
    if prompt.trim().is_empty() {
        return Err(invalid("empty prompt: pass it as an argument or on stdin"));
    }
    let broker = build(&a.opts, a.replay.as_deref())?;
    let mut messages = Vec::new();
    if let Some(s) = a.system {
        messages.push(ChatMessage::new(Role::System, s));
    }
    messages.push(ChatMessage::new(Role::User, prompt));
    let req = CompleteRequest {
        model: a.model.unwrap_or_default(),
        messages,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        seed: a.seed,
        ..CompleteRequest::default()
    };
    let result = if a.stream {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(STREAM_DELTAS_MAX);
        let printer = tokio::spawn(async move {
            let mut out = std::io::stdout();
            while let Some(delta) = rx.recv().await {
                let _ = out.write_all(delta.as_bytes());
                let _ = out.flush();
            }
        });
        let r = broker.complete(req, &ctx(a.provider), Some(tx)).await;
        let _ = printer.await;
        if r.is_ok() {
            println!();
        }
        r
    } else {
        broker.complete(req, &ctx(a.provider), None).await
    };
    let saved = save_stats(&broker, &a.opts);
    let answer = result.map_err(broker_failure)?;
    saved?;
    append_record(a.record.as_deref(), &answer.record)?;
    if a.json {
        println!("{}", answer_json(&answer));
    } else if !a.stream {
        println!("{}", answer.response.content);
    }
    if !a.json && std::io::stderr().is_terminal() {
        eprintln!(
            "[{} · {} · {} in / {} out tokens]",
            answer.response.provider,
            answer.response.model,
            answer.response.usage.tokens_in,
            answer.response.usage.tokens_out
        );
    }
    Ok(())
}

fn answer_json<T: serde::Serialize>(a: &Answer<T>) -> String {
    let v = serde_json::json!({
        "response": a.response,
        "served_by": a.served_by,
        "request_hash": a.record.request_hash,
        "latency_ms": a.latency_ms,
    });
    serde_json::to_string_pretty(&v).expect("json values encode")
}

async fn embed(a: EmbedArgs) -> Result<(), Failure> {
    let inputs: Vec<String> = if a.texts.is_empty() || a.texts == ["-"] {
        read_stdin()?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        a.texts
    };
    if inputs.is_empty() {
        return Err(invalid(
            "nothing to embed: pass texts as arguments or one per stdin line",
        ));
    }
    let broker = build(&a.opts, a.replay.as_deref())?;
    let req = EmbedRequest {
        model: a.model.unwrap_or_default(),
        inputs,
    };
    let result = broker.embed(req, &ctx(a.provider)).await;
    let saved = save_stats(&broker, &a.opts);
    let answer = result.map_err(broker_failure)?;
    saved?;
    append_record(a.record.as_deref(), &answer.record)?;
    if a.json {
        println!("{}", answer_json(&answer));
    } else {
        println!(
            "{} · {} · {} vectors",
            answer.response.provider,
            answer.response.model,
            answer.response.vectors.len()
        );
        for (i, v) in answer.response.vectors.iter().enumerate() {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nonzero = v.iter().filter(|x| **x != 0.0).count();
            println!(
                "{i}: {} dims, L2 norm {norm:.4}, {nonzero} non-zero (--json prints the vectors)",
                v.len()
            );
        }
    }
    Ok(())
}

fn ledger_path(opts: &BrokerOpts) -> PathBuf {
    state_dir(opts).join("broker").join("stats.json")
}

fn read_ledger(path: &Path) -> Result<Stats, Failure> {
    match read_bounded(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| failed(format!("ledger {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stats::default()),
        Err(e) => Err(failed(format!("read ledger {}: {e}", path.display()))),
    }
}

/// Adds this run's accounting to the ledger under an exclusive lock (concurrent runs do not lose counts).
fn save_stats(broker: &Broker, opts: &BrokerOpts) -> Result<(), Failure> {
    let path = ledger_path(opts);
    let dir = path.parent().expect("ledger path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("create {}: {e}", dir.display())))?;
    let lock = std::fs::File::create(dir.join("stats.lock"))
        .map_err(|e| failed(format!("lock ledger: {e}")))?;
    lock.lock()
        .map_err(|e| failed(format!("lock ledger: {e}")))?;
    let mut stats = read_ledger(&path)?;
    stats.merge(&broker.stats());
    let tmp = dir.join("stats.json.tmp");
    let text = serde_json::to_string_pretty(&stats).expect("stats encode");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| failed(format!("write ledger {}: {e}", path.display())))
}

fn stats(json: bool, opts: &BrokerOpts) -> Result<(), Failure> {
    let stats = read_ledger(&ledger_path(opts))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).expect("stats encode")
        );
        return Ok(());
    }
    println!(
        "{:<10} {:<20} {:>8} {:>10} {:>10} {:>12} {:>6} {:>6} {:>8} {:>8}",
        "BY", "KEY", "REQS", "TOK_IN", "TOK_OUT", "COST_USD", "HITS", "ERRS", "LAT_AVG", "LAT_MAX"
    );
    let mut rows: Vec<(&str, String, runloop_broker::Counters)> =
        vec![("total", "total".into(), stats.total)];
    for (by, map) in [
        ("provider", &stats.by_provider),
        ("opening", &stats.by_opening),
        ("agent", &stats.by_agent),
    ] {
        rows.extend(map.iter().map(|(k, c)| (by, k.clone(), *c)));
    }
    for (by, key, c) in rows {
        println!(
            "{by:<10} {key:<20} {:>8} {:>10} {:>10} {:>12.6} {:>6} {:>6} {:>6}ms {:>6}ms",
            c.requests,
            c.tokens_in,
            c.tokens_out,
            c.cost_usd_micros as f64 / 1e6,
            c.cache_hits,
            c.errors,
            c.latency_ms_mean(),
            c.latency_ms_max
        );
    }
    Ok(())
}

/// One completion for another command (the router turns a prompt into params with it):
/// the broker of the config at `config` (or the default one), its accounting added to the
/// ledger like `rlp model complete`'s. Returns the answer's text.
pub(crate) fn complete_once(
    config: Option<PathBuf>,
    system: String,
    prompt: String,
    max_tokens: u32,
) -> Result<String, Failure> {
    let opts = BrokerOpts {
        config,
        state_dir: None,
    };
    let broker = build(&opts, None)?;
    let req = CompleteRequest {
        messages: vec![
            ChatMessage::new(Role::System, system),
            ChatMessage::new(Role::User, prompt),
        ],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..CompleteRequest::default()
    };
    let result = runtime()?.block_on(broker.complete(req, &ctx(None), None));
    let saved = save_stats(&broker, &opts);
    let answer = result.map_err(broker_failure)?;
    saved?;
    Ok(answer.response.content)
}
