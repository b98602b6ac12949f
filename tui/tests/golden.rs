//! Golden snapshots of agtop's screens, drawn on ratatui's `TestBackend` at 80×24 (the
//! smallest terminal agtop supports) and 200×50: the main view (detail pane with the
//! agent's cgroup), the help, the confirmation modal, each run pane (plan, log, trace,
//! artifacts), a zoomed plan, and an `--events` file's view. `UPDATE_GOLDEN=1 cargo test -p runloop-tui --test golden`
//! rewrites the files under `tests/golden/`.

use std::path::PathBuf;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use runloop_proto::payloads::{ControlOutcome, RunStatus, RunSummary};
use runloop_tui::app::{App, Key};
use runloop_tui::cgroup::CgroupUsage;
use runloop_tui::fixtures::{action, progress, report, snapshot, trace_view, tree};
use runloop_tui::render::draw;

/// The app after three snapshots a second apart, the writer selected.
fn app() -> App {
    let mut app = App::new("/home/ada/.runloop/sock/rmp.sock".into(), false);
    for (i, (writer, kernel)) in [(100, 1_000), (350, 1_200), (500, 1_290)]
        .into_iter()
        .enumerate()
    {
        let i = i as u64;
        app.on_snapshot(&snapshot(
            i + 1,
            1_763_766_000_000 + i * 1_000,
            tree(writer, kernel),
        ));
    }
    app.on_outcome(ControlOutcome::Actions {
        actions: vec![action()],
    });
    app.on_outcome(ControlOutcome::Runs {
        runs: vec![RunSummary {
            trace_id: trace_view().trace_id,
            opening: "compose_email".into(),
            status: RunStatus::Running,
            reason: None,
            started_at_ms: Some(1_763_766_000_000),
            duration_ms: None,
        }],
    });
    for event in progress() {
        app.on_progress(&event);
    }
    while app.selected_row().unwrap().name != "agent-writer" {
        app.on_key(Key::Down);
    }
    app.cgroup = Some((
        "runloop/agent-writer".into(),
        CgroupUsage {
            v2: false,
            memory_bytes: Some(18 * 1_048_576),
            memory_max: Some(256 * 1_048_576),
            cpu_quota: Some((50_000, 100_000)),
            pids: Some(3),
            pids_max: Some(64),
        },
    ));
    app.load = Some([0.52, 0.61, 0.70]);
    app.set_status("agent writer restarted (1 restarts)");
    app
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, app)).unwrap();
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn golden(name: &str, actual: &str) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", name]
        .iter()
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs; UPDATE_GOLDEN=1 rewrites it"
    );
}

fn both_sizes(name: &str, app: &App) {
    golden(&format!("{name}_80x24.txt"), &screen(app, 80, 24));
    golden(&format!("{name}_200x50.txt"), &screen(app, 200, 50));
}

#[test]
fn main_view() {
    both_sizes("main", &app());
}

#[test]
fn help_overlay() {
    let mut app = app();
    app.on_key(Key::Char('?'));
    both_sizes("help", &app);
}

#[test]
fn confirmation_modal() {
    let mut app = app();
    app.on_key(Key::Char('a'));
    both_sizes("confirm", &app);
}

#[test]
fn trace_pane() {
    let mut app = app();
    app.on_key(Key::Char('T'));
    app.on_outcome(ControlOutcome::Trace { view: trace_view() });
    both_sizes("trace", &app);
}

#[test]
fn plan_pane_and_zoomed() {
    let mut app = app();
    app.on_key(Key::Char('2'));
    both_sizes("plan", &app);
    app.on_key(Key::Char('z'));
    golden("plan_zoomed_80x24.txt", &screen(&app, 80, 24));
}

#[test]
fn log_pane() {
    let mut app = app();
    app.on_key(Key::Char('3'));
    both_sizes("log", &app);
}

#[test]
fn artifacts_pane() {
    let mut app = app();
    app.on_key(Key::Char('5'));
    golden("artifacts_running_80x24.txt", &screen(&app, 80, 24));
    app.on_outcome(ControlOutcome::RunFinished { report: report() });
    both_sizes("artifacts", &app);
}

#[test]
fn events_file_view() {
    let mut app = App::events("run.ndjson".into(), false);
    for event in progress() {
        app.on_progress(&event);
    }
    app.set_status("end of the events: 13 lines, 0 not taken");
    both_sizes("events", &app);
}

#[test]
fn flat_sorted_by_cpu_with_a_filter() {
    let mut app = app();
    for k in [
        Key::Char('t'),
        Key::Char('s'),
        Key::Char('s'),
        Key::Char('s'),
    ] {
        app.on_key(k);
    }
    for _ in 0..2 {
        app.on_key(Key::Char('s'));
    }
    app.on_key(Key::Char('S'));
    golden("flat_cpu_desc_80x24.txt", &screen(&app, 80, 24));
}
