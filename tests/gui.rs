//! The app window, driven like a user would: click a scenario by its title,
//! change a parameter, press Run, watch real processes appear on the stage,
//! stop them, switch to presenter mode, scrub back in time.
//!
//! This test binary has its own `main` (`harness = false`): sessions start
//! `current_exe() __runner`, which here is this binary, so it becomes the
//! single-threaded runner when called that way. Tests run one after
//! another (each run forks real processes).

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use forkscope::app::{App, Command, GuiArgs, RunState, controls};
use forkscope::protocol::Value;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "__runner") {
        let code = forkscope::runner::runner_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let tests: &[(&str, fn())] = &[
        (
            "pick_set_run_and_see_processes",
            pick_set_run_and_see_processes,
        ),
        ("stop_ends_every_process", stop_ends_every_process),
        (
            "presenter_mode_changes_the_look",
            presenter_mode_changes_the_look,
        ),
        (
            "terminal_shows_each_line_once",
            terminal_shows_each_line_once,
        ),
        (
            "scrubbing_back_shows_an_earlier_value",
            scrubbing_back_shows_an_earlier_value,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    // The same closing line as libtest's, so tools that read it count these.
    let passed = tests.len() - failed.len();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed; 0 ignored");
        ExitCode::SUCCESS
    } else {
        println!("gui tests failed: {}", failed.join(", "));
        println!(
            "\ntest result: FAILED. {passed} passed; {} failed; 0 ignored",
            failed.len()
        );
        ExitCode::FAILURE
    }
}

/// The longest a test waits for something a real run does.
const PATIENCE: Duration = Duration::from_secs(20);

fn harness(args: GuiArgs) -> Harness<'static, App> {
    let app = App::new(&args).expect("the app starts");
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app)
}

/// Steps frames (never `run()`: a live run keeps repainting) until `done`
/// holds; false after `PATIENCE`.
fn wait_for(h: &mut Harness<'static, App>, done: impl Fn(&Harness<'static, App>) -> bool) -> bool {
    let start = Instant::now();
    loop {
        h.step();
        if done(h) {
            return true;
        }
        if start.elapsed() > PATIENCE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn has_label(h: &Harness<'static, App>, label: &str) -> bool {
    h.query_by_label(label).is_some()
}

fn picked_name(h: &Harness<'static, App>) -> String {
    h.state()
        .picked
        .as_ref()
        .map(|p| p.loaded.scenario.name.clone())
        .unwrap_or_default()
}

fn pick_set_run_and_see_processes() {
    let mut h = harness(GuiArgs {
        time_scale: Some(0.2),
        ..GuiArgs::default()
    });
    h.run_steps(3);
    assert_eq!(picked_name(&h), "locked-counter", "opens ready to run");

    // The catalog scrolls: these items may be out of sight, so they are
    // clicked the way assistive technology does.
    h.get_by_label("A shared counter without a lock loses updates")
        .click_accesskit();
    h.run_steps(3);
    assert_eq!(picked_name(&h), "unlocked-counter");
    h.get_by_label("Two workers share a counter, with a lock")
        .click_accesskit();
    h.run_steps(3);
    assert_eq!(picked_name(&h), "locked-counter");

    h.get_by_role_and_label(egui::Role::Slider, "loops")
        .set_value_accesskit(2.0);
    h.run_steps(3);
    let loops = h
        .state()
        .picked
        .as_ref()
        .and_then(|p| p.params.get("loops").cloned());
    assert_eq!(loops, Some(Value::Int(2)), "the slider set the parameter");

    h.get_by_label(controls::RUN).click();
    assert!(
        wait_for(&mut h, |h| has_label(h, "main.1") && has_label(h, "main.2")),
        "both workers appear on the stage"
    );
    // 2 × 1 + 2 × 3: the run used the parameter.
    assert!(
        wait_for(&mut h, |h| has_label(h, "shared v = 8")),
        "the shared value ends at 8"
    );
    assert!(
        wait_for(&mut h, |h| !h.state().run.is_running()),
        "the run ends"
    );
    let terminal = h.state().rec.live.merged_output.text();
    assert!(
        terminal.contains("final value: 8"),
        "terminal: {terminal:?}"
    );
}

fn stop_ends_every_process() {
    let mut h = harness(GuiArgs {
        set: vec!["loops=50".into(), "sleep_ms=2000".into()],
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| has_label(h, "main.1") && has_label(h, "main.2")));
    let pids: Vec<i32> = h
        .state()
        .rec
        .live
        .processes
        .values()
        .map(|p| p.pid)
        .filter(|p| *p > 0)
        .collect();
    assert!(pids.len() >= 4, "runner, main and two workers: {pids:?}");
    h.get_by_label(controls::STOP).click();
    assert!(wait_for(&mut h, |h| matches!(
        h.state().run,
        RunState::Finished { stopped: true, .. }
    )));
    let start = Instant::now();
    let alive = |pid: &i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    while pids.iter().any(alive) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&i32> = pids.iter().filter(|p| alive(p)).collect();
    assert!(left.is_empty(), "still alive after Stop: {left:?}");
}

fn presenter_mode_changes_the_look() {
    let mut h = harness(GuiArgs::default());
    h.run_steps(3);
    assert!(h.ctx.global_style().visuals.dark_mode);
    assert!(has_label(&h, "Scenarios"), "the picker is shown");
    h.get_by_label(controls::PRESENTER).click();
    h.run_steps(3);
    assert!(h.state().presenter);
    assert!(!h.ctx.global_style().visuals.dark_mode, "light theme");
    assert!((h.ctx.zoom_factor() - 1.6).abs() < 1e-3, "large type");
    assert!(!has_label(&h, "Scenarios"), "side panels collapse");
    h.get_by_label(controls::PRESENTER).click();
    h.run_steps(3);
    assert!(h.ctx.global_style().visuals.dark_mode);
    assert!((h.ctx.zoom_factor() - 1.0).abs() < 1e-3);
}

fn scrubbing_back_shows_an_earlier_value() {
    let mut h = harness(GuiArgs {
        time_scale: Some(0.1),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && h.state().rec.len() > 10));
    assert!(wait_for(&mut h, |h| has_label(h, "shared v = 20")));

    // Clicking the timeline pauses there.
    h.get_by_label("timeline").click();
    h.run_steps(2);
    assert!(!h.state().time.follow, "the view is paused");

    // Back to just before the first add wrote the value.
    let first_write = h
        .state()
        .rec
        .log
        .events()
        .iter()
        .find(|e| e.body.kind() == "write")
        .map(|e| e.t_ns)
        .expect("the workers wrote");
    h.state_mut().command(Command::Seek(first_write - 1));
    h.run_steps(2);
    assert!(has_label(&h, "shared v = 0"), "the value before any add");
    assert!(has_label(&h, "main.1"), "the workers exist by then");

    h.get_by_label(controls::LIVE).click();
    h.run_steps(2);
    assert!(has_label(&h, "shared v = 20"), "back to the end");
}

fn terminal_shows_each_line_once() {
    let mut h = harness(GuiArgs {
        scenario: Some("globals-not-shared".into()),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && h.state().rec.len() > 5));
    let terminal = h.state().rec.live.merged_output.text();
    let outputs: Vec<String> = h
        .state()
        .rec
        .log
        .events()
        .iter()
        .filter(|e| e.body.kind() == "output")
        .map(|e| format!("{} {:?}", e.proc_id, e.body))
        .collect();
    assert_eq!(
        terminal, "main start\nchild start\nchild num: 101\nchild end\nmain num: 100\n",
        "events: {outputs:#?}"
    );
}
