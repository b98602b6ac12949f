//! The router end to end (`docs/router.md`): the real `rlp` in a temp `HOME` with its own
//! config. `rlp route` exit codes (10 shell, 11 agent) and `--json` shape, `rlp why`'s text,
//! bad prompts (exit 2), `rlp "<prompt>"` running the shell (fastpath on) or printing it
//! (off), the config lists, and an agent prompt run as a one-node opening's params in a
//! real sandbox (embedded kernel). The agent run needs `runloop-sandbox-host` built next to
//! `rlp`: `cargo build -p runloop-sandbox-host`.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

use common::{json_of, rlp, rlp_command, text};

fn home(test: &str) -> PathBuf {
    common::home("rl-router", test)
}

/// Writes `~/.runloop/config.yaml` with `body`.
fn config(home: &Path, body: &str) {
    let dir = home.join(".runloop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), body).unwrap();
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn route_exits_10_for_the_shell_and_11_for_an_agent() {
    let home = home("route");
    let shell = rlp(&home, None, &["route", "ls -l"]);
    assert_eq!(shell.status.code(), Some(10), "{}", text(&shell));
    assert_eq!(stdout(&shell), "shell\n");
    assert!(stderr(&shell).contains("rule on_path"), "{}", text(&shell));

    let agent = rlp(&home, None, &["route", "find the email from Bob"]);
    assert_eq!(agent.status.code(), Some(11), "{}", text(&agent));
    assert_eq!(stdout(&agent), "agent\n");
    assert!(stderr(&agent).contains("rule command_then_prose"));

    let piped = rlp(&home, None, &["route", "echo hi | wc -c"]);
    assert_eq!(piped.status.code(), Some(10), "{}", text(&piped));
    let question = rlp(&home, None, &["route", "what is ls?"]);
    assert_eq!(question.status.code(), Some(11), "{}", text(&question));
}

#[test]
fn route_json_has_the_rule_and_every_step() {
    let home = home("json");
    let out = rlp(&home, None, &["route", "cd /tmp", "--json"]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["prompt"], "cd /tmp");
    assert_eq!(v["route"], "shell");
    assert_eq!(v["rule"], "builtin");
    assert_eq!(v["action"], "run_shell");
    assert_eq!(v["fastpath_shell"], true);
    assert_eq!(v["default_opening"], "compose_email");
    assert!(v["rule_text"].as_str().unwrap().contains("builtin"));
    assert!(v["detail"].as_str().unwrap().contains("cd"));
    let steps = v["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["rule"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "denylist",
            "allowlist",
            "question",
            "shell_syntax",
            "command_then_prose",
            "builtin"
        ]
    );
    assert!(steps[..5].iter().all(|s| s["matched"] == false));
    assert_eq!(steps[5]["matched"], true);
    assert!(steps.iter().all(|s| s["note"].is_string()));

    let out = rlp(
        &home,
        None,
        &["route", "email Maria about the launch", "--json"],
    );
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(
        (v["route"].clone(), v["rule"].clone()),
        ("agent".into(), "prose".into())
    );
    assert_eq!(v["action"], "run_opening");
}

#[test]
fn why_prints_each_rule_and_the_one_that_decided() {
    let home = home("why");
    let out = rlp(&home, None, &["why", "find the email from Bob"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = stdout(&out);
    assert!(
        s.starts_with("prompt: \"find the email from Bob\"\n"),
        "{s}"
    );
    for rule in ["denylist", "allowlist", "question", "shell_syntax"] {
        assert!(s.contains(&format!(". {rule}")), "{rule} missing in {s}");
    }
    assert!(s.contains("command_then_prose MATCH"), "{s}");
    assert!(s.contains("\"the email from Bob\" is prose"), "{s}");
    assert!(s.contains("→ an agent (opening compose_email), decided by rule command_then_prose"));
    assert!(s.contains("not reached: builtin, path, on_path, known_command, prose, default"));

    let out = rlp(&home, None, &["why", "find . -name x"]);
    let s = stdout(&out);
    assert!(
        s.contains("command_then_prose no    \"find\" is followed by arguments"),
        "{s}"
    );
    assert!(s.contains("→ the shell, decided by rule on_path"), "{s}");
}

#[test]
fn an_empty_prompt_is_bad_input() {
    let home = home("empty");
    for args in [
        &["route", ""][..],
        &["route", "   "],
        &["why", ""],
        &["route", "--run", " "],
    ] {
        let out = rlp(&home, None, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            stderr(&out).contains("rlp: InvalidPrompt: empty prompt"),
            "{args:?}: {}",
            text(&out)
        );
    }
    let out = rlp(&home, None, &["route", "", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(json_of(&out)["error"], "InvalidPrompt");
    let long = "x".repeat(9000);
    let out = rlp(&home, None, &["route", &long]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("8192-byte limit"));
}

#[test]
fn a_shell_prompt_runs_with_the_fastpath_on() {
    let home = home("fastpath-on");
    let out = rlp(&home, None, &["echo hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out), "hi\n");
    // Words given apart are joined; the shell's exit status is passed through.
    let out = rlp(&home, None, &["echo", "two", "words"]);
    assert_eq!(stdout(&out), "two words\n", "{}", text(&out));
    let out = rlp(&home, None, &["exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let out = rlp(&home, None, &["echo hi | tr h H"]);
    assert_eq!(stdout(&out), "Hi\n", "{}", text(&out));
    // A subcommand's name is the subcommand; `route --run` forces routing.
    let out = rlp(&home, None, &["route", "--run", "echo routed"]);
    assert_eq!(stdout(&out), "routed\n", "{}", text(&out));
    // `--` routes even a line whose first word is a subcommand's name.
    let out = rlp(&home, None, &["--", "status 2>/dev/null || echo forced"]);
    assert_eq!(stdout(&out), "forced\n", "{}", text(&out));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_shell_prompt_is_printed_not_run_with_the_fastpath_off() {
    let home = home("fastpath-off");
    config(&home, "version: 1\nrouter:\n  fastpath_shell: false\n");
    let marker = home.join("ran");
    let command = format!("touch {}", marker.display());
    let out = rlp(&home, None, &[&command]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert_eq!(stdout(&out), format!("{command}\n"));
    assert!(stderr(&out).contains("router.fastpath_shell is off"));
    assert!(!marker.exists(), "the command ran");
    let out = rlp(&home, None, &["echo hi"]);
    assert_eq!(stdout(&out), "echo hi\n");
    assert_eq!(out.status.code(), Some(10));
    let out = rlp(&home, None, &["route", "echo hi", "--json"]);
    assert_eq!(json_of(&out)["action"], "print_shell");
    // The environment layer turns it back on.
    let out = rlp_command(&home, None, &["echo hi"])
        .env("RUNLOOP__ROUTER__FASTPATH_SHELL", "true")
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "hi\n", "{}", text(&out));
}

#[test]
fn the_config_lists_are_obeyed() {
    let home = home("lists");
    config(
        &home,
        "version: 1\nrouter:\n  denylist: [echo, \"ls -la*\"]\n  allowlist: [\"make *\"]\n  \
         known_commands: [frobnicate]\n",
    );
    let route = |prompt: &str| {
        let out = rlp(&home, None, &["route", prompt, "--json"]);
        let v: Value = json_of(&out);
        (
            out.status.code(),
            v["rule"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert_eq!(route("echo hi"), (Some(11), "denylist".into()));
    assert_eq!(route("ls -la /tmp"), (Some(11), "denylist".into()));
    assert_eq!(route("ls -l"), (Some(10), "on_path".into()));
    assert_eq!(route("make me a sandwich"), (Some(10), "allowlist".into()));
    assert_eq!(
        route("frobnicate the widgets"),
        (Some(10), "known_command".into())
    );
    // A denied command does not run even with the fastpath on.
    let marker = home.join("ran");
    config(
        &home,
        "version: 1\nrouter:\n  denylist: [touch]\n  default_opening: /nonexistent/x.yaml\n",
    );
    let out = rlp(&home, None, &[&format!("touch {}", marker.display())]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("UnknownOpening"), "{}", text(&out));
    assert!(!marker.exists());
    // A list of the wrong type is a config error.
    config(&home, "version: 1\nrouter:\n  denylist: rm\n");
    let out = rlp(&home, None, &["route", "ls"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// A one-node opening whose goal reads `greet <name> warmly`.
const GREETER: &str = "version: 0\nname: greeter\ngoals: [\"greet {{params.name}} warmly\"]\n\
params:\n  name: { type: string, description: \"who to greet\" }\nnodes:\n  \
- { id: hello, use: \"agent:echo\", with: { text: \"{{params.name}}\" } }\n";

#[test]
fn an_agent_prompt_runs_the_default_opening_with_its_params() {
    let home = home("agent");
    let opening = home.join("greeter.yaml");
    std::fs::write(&opening, GREETER).unwrap();
    config(
        &home,
        &format!(
            "version: 1\nrouter:\n  default_opening: {}\n",
            opening.display()
        ),
    );
    let out = rlp(&home, None, &["greet Maria Garcia warmly"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("an agent prompt (rule prose) → opening greeter"),
        "{err}"
    );
    assert!(
        err.contains("{\"name\":\"Maria Garcia\"} from goal 1"),
        "{err}"
    );
    let s = stdout(&out);
    assert!(s.contains("of greeter: succeeded"), "{s}");
    assert!(s.contains("Maria Garcia"), "{s}");

    // A prompt neither the model nor a goal can map: exit 2, the goal as an example.
    let out = rlp(&home, None, &["say hello to everyone"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("rlp: UnmappedPrompt"), "{err}");
    assert!(err.contains("say it like: greet <name> warmly"), "{err}");
}

#[test]
fn the_default_opening_is_found_by_name() {
    let home = home("by-name");
    let dir = home.join(".runloop/openings");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("greeter.yaml"), GREETER).unwrap();
    config(&home, "version: 1\nrouter:\n  default_opening: greeter\n");
    let out = rlp(&home, None, &["please greet Bob warmly"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("{\"name\":\"Bob\"}"),
        "{}",
        text(&out)
    );

    config(&home, "version: 1\nrouter:\n  default_opening: nope\n");
    let out = rlp(&home, None, &["greet Bob warmly"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("UnknownOpening"), "{}", text(&out));
    assert!(stderr(&out).contains("no nope.yaml in"), "{}", text(&out));
}

/// A one-shot OpenAI-compatible server on loopback: answers each `/v1/chat/completions`
/// with `content` and hands the request bodies it saw to the test (a stub: the test needs
/// a model that answers JSON, which the offline provider never does).
fn fake_model(content: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    const REQUESTS_MAX: usize = 8;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(REQUESTS_MAX) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            let answer = serde_json::json!({
                "id": "fake-1", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, rx)
}

#[test]
fn the_broker_model_maps_free_phrasing_to_params() {
    let home = home("model");
    let (url, seen) = fake_model("Sure: {\"name\": \"Maria\", \"mood\": null}");
    let opening = home.join("greeter.yaml");
    std::fs::write(&opening, GREETER).unwrap();
    config(
        &home,
        &format!(
            "version: 1\nmodels:\n  default: \"fake:m\"\n  broker:\n    providers:\n      \
             - {{ id: fake, kind: http, base_url: \"{url}\", secret_id: runloop/models/fake }}\n\
             router:\n  default_opening: {}\n",
            opening.display()
        ),
    );
    // No goal matches "say hi to Maria"; the model's JSON does.
    let out = rlp_command(&home, None, &["say hi to Maria"])
        .env("RUNLOOP_MODELS_FAKE", "fake-key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("{\"name\":\"Maria\"} by the broker's model"),
        "{err}"
    );
    let request: Value = serde_json::from_str(&seen.recv().unwrap()).unwrap();
    let system = request["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("opening \"greeter\""), "{system}");
    assert!(
        system.contains("- name (string, optional): who to greet"),
        "{system}"
    );
    assert_eq!(request["messages"][1]["content"], "say hi to Maria");
    assert!(
        stdout(&out).contains("of greeter: succeeded"),
        "{}",
        text(&out)
    );
}
