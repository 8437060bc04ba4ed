//! The app window, driven like a user would: click a scenario by its title,
//! change a parameter, press Run, watch real processes appear on the stage,
//! stop them, switch to presenter mode, scrub back in time; in the race
//! lab, pick who goes next by hand, undo a step, save and load a schedule,
//! and run a scenario many times for its histogram.
//!
//! This test binary has its own `main` (`harness = false`): sessions start
//! `current_exe() __runner`, which here is this binary, so it becomes the
//! single-threaded runner when called that way. Tests run one after
//! another (each run forks real processes).

mod harness;

use harness::wait_for;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use forkscope::app::recording::LaneState;
use forkscope::app::{
    App, Command, GuiArgs, RunState, controls, files, help, inspector, lab, many, settings,
};
use forkscope::protocol::Value;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let tests: &[(&str, fn())] = &[
        (
            "pick_set_run_and_see_processes",
            pick_set_run_and_see_processes,
        ),
        ("stop_ends_every_process", stop_ends_every_process),
        (
            "step_mode_on_the_command_line_takes_the_small_parameters",
            step_mode_on_the_command_line_takes_the_small_parameters,
        ),
        (
            "plus_on_a_full_stage_says_why_the_words_stay",
            plus_on_a_full_stage_says_why_the_words_stay,
        ),
        (
            "presenter_mode_changes_the_look",
            presenter_mode_changes_the_look,
        ),
        (
            "presenter_switched_on_gives_the_presenter_stage",
            presenter_switched_on_gives_the_presenter_stage,
        ),
        (
            "terminal_shows_each_line_once",
            terminal_shows_each_line_once,
        ),
        (
            "scrubbing_back_shows_an_earlier_value",
            scrubbing_back_shows_an_earlier_value,
        ),
        (
            "step_mode_lost_update_by_hand_then_undo",
            step_mode_lost_update_by_hand_then_undo,
        ),
        (
            "step_mode_small_run_until_news_and_back_to_a_step",
            step_mode_small_run_until_news_and_back_to_a_step,
        ),
        (
            "seeded_run_saved_and_loaded_again",
            seeded_run_saved_and_loaded_again,
        ),
        ("seeded_deadlock_is_drawn", seeded_deadlock_is_drawn),
        (
            "step_mode_picks_threads_by_their_keys",
            step_mode_picks_threads_by_their_keys,
        ),
        (
            "step_mode_asks_after_a_run_of_ticker_steps",
            step_mode_asks_after_a_run_of_ticker_steps,
        ),
        (
            "many_runs_show_a_histogram_lock_off_and_on",
            many_runs_show_a_histogram_lock_off_and_on,
        ),
        (
            "many_runs_of_a_python_program_show_its_histogram",
            many_runs_of_a_python_program_show_its_histogram,
        ),
        (
            "a_flood_keeps_memory_bounded_and_scrubbing_works",
            a_flood_keeps_memory_bounded_and_scrubbing_works,
        ),
        (
            "a_recording_opens_on_the_stage_and_saves_back",
            a_recording_opens_on_the_stage_and_saves_back,
        ),
        (
            "the_lost_update_count_is_adds_minus_final",
            the_lost_update_count_is_adds_minus_final,
        ),
        (
            "slow_motion_replays_a_recording_from_a_moment",
            slow_motion_replays_a_recording_from_a_moment,
        ),
        (
            "threads_get_timeline_lanes_under_their_process",
            threads_get_timeline_lanes_under_their_process,
        ),
        (
            "opening_a_file_asks_first_while_a_run_goes_on",
            opening_a_file_asks_first_while_a_run_goes_on,
        ),
        (
            "picking_another_scenario_clears_the_stage",
            picking_another_scenario_clears_the_stage,
        ),
        (
            "settings_come_back_at_the_next_launch",
            settings_come_back_at_the_next_launch,
        ),
        (
            "question_mark_lists_every_key",
            question_mark_lists_every_key,
        ),
        (
            "f11_is_full_screen_and_p_the_presenter_look",
            f11_is_full_screen_and_p_the_presenter_look,
        ),
        (
            "presenter_panels_one_by_one_and_zoom_on_the_stage",
            presenter_panels_one_by_one_and_zoom_on_the_stage,
        ),
        (
            "the_presenter_toolbar_is_one_line_at_720p",
            the_presenter_toolbar_is_one_line_at_720p,
        ),
        (
            "a_python_program_opens_with_its_source_and_markers",
            a_python_program_opens_with_its_source_and_markers,
        ),
        ("harness_counts_what_it_ran", harness_counts_what_it_ran),
    ];
    harness::main(tests)
}

/// The harness itself, run the way cargo runs it: a filter runs only what
/// it names and the closing line counts that; `--list` lists and runs
/// nothing; other libtest flags are harmless.
fn harness_counts_what_it_ran() {
    let me = std::env::current_exe().expect("own path");
    let run = |args: &[&str]| -> String {
        let out = std::process::Command::new(&me)
            .args(args)
            .output()
            .expect("the test binary runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let all = run(&["--list"]);
    let n = all.lines().filter(|l| l.ends_with(": test")).count();
    assert!(n > 5, "{all}");
    assert!(
        all.ends_with(&format!("\n{n} tests, 0 benchmarks\n")),
        "{all}"
    );
    let none = run(&["nosuchtest"]);
    assert!(none.contains("running 0 tests"), "{none}");
    assert!(
        none.contains(&format!(
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; {n} filtered out"
        )),
        "{none}"
    );
    let list = run(&["--list", "stop", "--test-threads", "1", "--nocapture"]);
    assert_eq!(
        list, "stop_ends_every_process: test\n\n1 test, 0 benchmarks\n",
        "only what the filter names, in libtest's format"
    );
    let exact = run(&["--list", "--exact", "stop"]);
    assert_eq!(
        exact, "0 tests, 0 benchmarks\n",
        "--exact wants the whole name"
    );
    let ignored = run(&["--ignored"]);
    assert!(ignored.contains("0 passed; 0 failed"), "{ignored}");
}

fn harness(args: GuiArgs) -> Harness<'static, App> {
    let app = App::new(&args).expect("the app starts");
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app)
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

/// Switching presenter mode on (the button, or F11) gives the stage that
/// `--presenter` starts with: same place, same size (the desk's bottom
/// panel does not stay).
fn presenter_switched_on_gives_the_presenter_stage() {
    let mut started = harness(GuiArgs {
        presenter: true,
        ..GuiArgs::default()
    });
    started.run_steps(4);
    let want = started.state().stage.last_rect.expect("a stage is drawn");
    let mut switched = harness(GuiArgs::default());
    switched.run_steps(3);
    let desk = switched.state().stage.last_rect.expect("a stage is drawn");
    switched.get_by_label(controls::PRESENTER).click();
    switched.run_steps(4);
    let got = switched.state().stage.last_rect.expect("a stage is drawn");
    assert!(
        (got.min - want.min).length() < 1.0 && (got.max - want.max).length() < 1.0,
        "switched on: {got:?}, started with --presenter: {want:?} (desk: {desk:?})"
    );
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
        .kept()
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
        .kept()
        .iter()
        .filter(|e| e.body.kind() == "output")
        .map(|e| format!("{} {:?}", e.proc_id, e.body))
        .collect();
    assert_eq!(
        terminal, "main start\nchild start\nchild num: 101\nchild end\nmain num: 100\n",
        "events: {outputs:#?}"
    );
}

// ---- the race lab ----------------------------------------------------------

fn counter_by_hand() -> GuiArgs {
    GuiArgs {
        scenario: Some("unlocked-counter".into()),
        set: vec!["workers=2".into(), "adds=1".into()],
        mode: Some(lab::Mode::Step),
        ..GuiArgs::default()
    }
}

/// The run waits for the user to pick (not replaying, not mid-step).
fn your_turn(h: &Harness<'static, App>) -> bool {
    let app = h.state();
    app.run.is_running()
        && app
            .gated
            .as_ref()
            .is_some_and(|g| g.awaiting_user && !g.replaying())
}

fn steps_taken(h: &Harness<'static, App>) -> usize {
    h.state().gated.as_ref().map_or(0, |g| g.schedule.len())
}

fn next_action(h: &Harness<'static, App>, id: &str) -> String {
    h.state()
        .rec
        .live
        .process(id)
        .and_then(|p| p.pending.clone())
        .unwrap_or_default()
}

enum Pick {
    /// Click the process on the stage.
    Click(&'static str),
    /// Press its number.
    Key(egui::Key, &'static str),
}

/// One step by hand; returns what that process will do next.
fn step(h: &mut Harness<'static, App>, pick: Pick) -> String {
    let id = match pick {
        Pick::Click(id) | Pick::Key(_, id) => id,
    };
    assert!(
        wait_for(h, |h| your_turn(h)
            && h.state().gated.as_ref().is_some_and(|g| g
                .candidates
                .iter()
                .any(|c| c.id == id && c.enabled))),
        "{id} may go"
    );
    let before = steps_taken(h);
    match pick {
        Pick::Click(id) => h.get_by_label(id).click(),
        Pick::Key(key, _) => h.key_press(key),
    }
    assert!(
        wait_for(h, |h| steps_taken(h) > before && your_turn(h)),
        "{id} took its step and the run waits again"
    );
    next_action(h, id)
}

fn live_pids(h: &Harness<'static, App>) -> Vec<i32> {
    h.state()
        .rec
        .live
        .processes
        .values()
        .map(|p| p.pid)
        .filter(|p| *p > 0)
        .collect()
}

fn assert_all_gone(pids: &[i32]) {
    let start = Instant::now();
    let alive = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };
    while pids.iter().any(alive) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&i32> = pids.iter().filter(|p| alive(p)).collect();
    assert!(left.is_empty(), "still alive: {left:?}");
}

const LOST_BY_HAND: &str = "LOST UPDATE: main.2 read 0, wrote 1 over 1";

fn step_mode_lost_update_by_hand_then_undo() {
    let mut h = harness(counter_by_hand());
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(
        wait_for(&mut h, your_turn),
        "the run stops before main's first step"
    );
    assert_eq!(next_action(&h, "main"), "start a worker process");
    assert!(!has_label(&h, "main.1"), "nothing started yet");

    // main starts both workers: once by click, once by its key (1).
    step(&mut h, Pick::Click("main"));
    assert!(has_label(&h, "main.1"));
    step(&mut h, Pick::Key(egui::Key::Num1, "main"));
    assert!(has_label(&h, "main.2"));
    assert_eq!(next_action(&h, "main.1"), "read counter");
    assert!(
        h.state()
            .rec
            .live
            .process("main")
            .and_then(|p| p.pending.clone())
            == Some("join main.1".into())
    );
    assert!(
        h.state()
            .gated
            .as_ref()
            .is_some_and(|g| g.candidates.iter().any(|c| c.id == "main" && !c.enabled)),
        "main cannot join a running worker"
    );

    // read, read, write, write: the classic lost update.
    assert_eq!(step(&mut h, Pick::Click("main.1")), "write counter = 1");
    assert_eq!(
        step(&mut h, Pick::Key(egui::Key::Num3, "main.2")),
        "write counter = 1"
    );
    step(&mut h, Pick::Click("main.1"));
    assert!(has_label(&h, "shared counter = 1"));
    assert!(!has_label(&h, LOST_BY_HAND), "no lost update yet");
    step(&mut h, Pick::Key(egui::Key::Num3, "main.2"));
    assert!(has_label(&h, "shared counter = 1"), "2 adds, counter 1");
    assert!(has_label(&h, LOST_BY_HAND), "the lost update is marked");
    let steps = steps_taken(&h);
    let first_pids = live_pids(&h);

    // Undo: a new run replays all but main.2's write.
    h.get_by_label(lab::UNDO).click();
    assert!(
        wait_for(&mut h, |h| your_turn(h) && steps_taken(h) == steps - 1),
        "the run is back one step"
    );
    assert!(
        !has_label(&h, LOST_BY_HAND),
        "the write that lost it is undone"
    );
    assert!(
        has_label(&h, "shared counter = 1"),
        "main.1's write is still there"
    );
    assert_eq!(next_action(&h, "main.2"), "write counter = 1");
    assert_all_gone(&first_pids);

    // Run to end: the seeded scheduler finishes; main.2 still overwrites.
    let pids = live_pids(&h);
    h.get_by_label(lab::RUN_TO_END).click();
    assert!(
        wait_for(&mut h, |h| !h.state().run.is_running()),
        "the run ends"
    );
    assert!(wait_for(&mut h, |h| has_label(h, LOST_BY_HAND)));
    let terminal = h.state().rec.live.merged_output.text();
    assert!(terminal.contains("counter = 1"), "terminal: {terminal:?}");
    assert_all_gone(&pids);
}

/// Entering step mode offers small parameters (2 workers x 3 adds);
/// "until something happens" (key N) runs on to the first process that
/// must wait or the first lost update and says so; the step list returns
/// to a step in a fresh run. A lost update by hand takes a few keys.
fn step_mode_small_run_until_news_and_back_to_a_step() {
    let mut h = harness(GuiArgs {
        scenario: Some("unlocked-counter".into()),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label("Step").click();
    h.run_steps(2);
    let params = |h: &Harness<'static, App>| {
        h.state().picked.as_ref().map(|p| {
            (
                p.params.get("workers").cloned(),
                p.params.get("adds").cloned(),
            )
        })
    };
    assert_eq!(
        params(&h),
        Some((Some(Value::Int(2)), Some(Value::Int(3)))),
        "step mode proposes 2 workers x 3 adds"
    );
    assert!(
        h.state()
            .status
            .as_deref()
            .is_some_and(|s| s.contains("workers = 2") && s.contains("adds = 3")),
        "and says so: {:?}",
        h.state().status
    );
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, your_turn), "the run waits for a pick");

    // N, N, …: each stops at news; a lost update within a few presses.
    let mut presses = 0;
    let lost = |h: &Harness<'static, App>| {
        h.state()
            .rec
            .live
            .values
            .values()
            .any(|v| v.updates_lost() > 0)
    };
    let mut told = Vec::new();
    while !lost(&h) && presses < 12 {
        let before = steps_taken(&h);
        h.key_press(egui::Key::N);
        presses += 1;
        assert!(
            wait_for(&mut h, |h| (steps_taken(h) > before && your_turn(h))
                || !h.state().run.is_running()),
            "N ran on and stopped"
        );
        if let Some(news) = h.state().gated.as_ref().and_then(|g| g.news.clone()) {
            told.push(news);
        }
    }
    assert!(
        lost(&h),
        "a lost update after {presses} presses of N: {told:?}"
    );
    assert!(presses <= 8, "{presses} presses: {told:?}");
    println!("a lost update after {presses} presses of N, stopping at: {told:?}");
    assert!(
        told.iter().any(|t| t.starts_with("a lost update")),
        "the step bar says what stopped it: {told:?}"
    );
    if h.state().run.is_running() {
        assert!(
            wait_for(&mut h, |h| h
                .query_by_label_contains("stopped at a lost update")
                .is_some()),
            "the step bar shows it"
        );
    }

    // The step list: back to step 2 in a fresh run.
    let n = steps_taken(&h);
    assert!(n > 2);
    h.get_by_label(&lab::step_list_title(n)).click();
    h.run_steps(2);
    let pids = live_pids(&h);
    let second = forkscope::app::steps::steps(&h.state().rec.log)
        .and_then(|list| list.get(1).map(lab::step_words))
        .unwrap_or_default();
    h.get_by_label(&second).click();
    assert!(
        wait_for(&mut h, |h| your_turn(h) && steps_taken(h) == 2),
        "back to step 2"
    );
    assert!(!lost(&h), "the lost update is not there yet");
    assert!(
        has_label(&h, &lab::step_list_title(2)),
        "the list holds the two replayed steps"
    );
    assert!(
        wait_for(&mut h, |h| h
            .query_by_label_contains("Replayed 2 steps in a fresh run")
            .is_some()
            || h.state()
                .status
                .as_deref()
                .is_some_and(|s| s.contains("replays the first 2 steps"))),
        "it says it replayed 2 steps: {:?}",
        h.state().status
    );
    assert_all_gone(&pids);
    h.get_by_label(lab::RUN_TO_END).click();
    assert!(
        wait_for(&mut h, |h| !h.state().run.is_running()),
        "the run ends"
    );
}

/// What a thread will do on `go` (step mode).
fn thread_next(h: &Harness<'static, App>, name: &str) -> String {
    h.state()
        .rec
        .live
        .thread(name)
        .and_then(|(_, t)| t.pending.clone())
        .unwrap_or_default()
}

/// Step mode on `signals`: the ticker child prints and sleeps forever, and
/// none of that needs the user, so it goes on its own; but not forever:
/// after a run of such steps the lab stops it and asks, with main's
/// SIGSTOP among the choices. Picking main freezes the ticker.
fn step_mode_asks_after_a_run_of_ticker_steps() {
    let mut h = harness(GuiArgs {
        scenario: Some("signals".into()),
        mode: Some(lab::Mode::Step),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(
        wait_for(&mut h, your_turn),
        "the run waits for main's first step"
    );
    step(&mut h, Pick::Key(egui::Key::Num1, "main"));
    assert!(has_label(&h, "main.1"), "main started the ticker");
    let ticks = |h: &Harness<'static, App>| {
        h.state()
            .rec
            .live
            .merged_output
            .text()
            .lines()
            .filter(|l| l.starts_with("tick "))
            .count()
    };
    assert!(
        wait_for(&mut h, |h| your_turn(h) && ticks(h) > 0),
        "the ticker ticks on its own, then the run asks"
    );
    assert!(
        h.state()
            .gated
            .as_ref()
            .is_some_and(|g| g.candidates.iter().any(|c| c.id == "main" && c.enabled)),
        "main may go: its SIGSTOP is one of the choices"
    );
    assert!(
        next_action(&h, "main").contains("SIGSTOP"),
        "main's next step: {:?}",
        next_action(&h, "main")
    );
    let asked_at = ticks(&h);
    h.run_steps(20);
    assert_eq!(ticks(&h), asked_at, "no tick while the run asks");
    let pids = live_pids(&h);
    step(&mut h, Pick::Key(egui::Key::Num1, "main"));
    assert!(
        wait_for(&mut h, |h| h
            .state()
            .rec
            .live
            .merged_output
            .text()
            .contains("main: sent SIGSTOP")
            || next_action(h, "main").contains("print")),
        "main sends SIGSTOP"
    );
    h.get_by_label(controls::STOP).click();
    assert!(
        wait_for(&mut h, |h| !h.state().run.is_running()),
        "the run stops"
    );
    assert_all_gone(&pids);
}

/// One step by key: waits until `id` (a process or a thread) may go,
/// presses its key, waits until the run waits again.
fn step_by_key(h: &mut Harness<'static, App>, key: egui::Key, id: &str) {
    assert!(
        wait_for(h, |h| your_turn(h)
            && h.state().gated.as_ref().is_some_and(|g| g
                .candidates
                .iter()
                .any(|c| c.id == id && c.enabled))),
        "{id} may go"
    );
    let before = steps_taken(h);
    h.key_press(key);
    assert!(
        wait_for(h, |h| steps_taken(h) > before
            && (your_turn(h) || !h.state().run.is_running())),
        "{id} took its step"
    );
}

fn step_mode_picks_threads_by_their_keys() {
    let mut h = harness(GuiArgs {
        scenario: Some("thread-counter".into()),
        set: vec!["threads=2".into(), "adds=1".into()],
        mode: Some(lab::Mode::Step),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, your_turn), "the run waits for main");
    // main (key 1): its caption, then it starts the two threads.
    step_by_key(&mut h, egui::Key::Num1, "main");
    step_by_key(&mut h, egui::Key::Num1, "main");
    step_by_key(&mut h, egui::Key::Num1, "main");
    assert_eq!(thread_next(&h, "main.t1"), "read counter");
    assert_eq!(thread_next(&h, "main.t2"), "read counter");
    // Each thread is a lane of main's node, with its key.
    assert!(
        h.state()
            .rec
            .live
            .process("main")
            .is_some_and(|p| p.threads.len() == 2),
        "main has two threads"
    );
    // read, read, write, write by keys 2 and 3: a lost update of threads.
    step_by_key(&mut h, egui::Key::Num2, "main.t1");
    step_by_key(&mut h, egui::Key::Num3, "main.t2");
    assert_eq!(thread_next(&h, "main.t1"), "write counter = 1");
    step_by_key(&mut h, egui::Key::Num2, "main.t1");
    step_by_key(&mut h, egui::Key::Num3, "main.t2");
    let lost = h
        .state()
        .rec
        .live
        .values
        .get("counter")
        .map_or(0, |v| v.lost_updates.len());
    assert_eq!(lost, 1, "the second write erased the first");
    h.get_by_label(lab::RUN_TO_END).click();
    assert!(
        wait_for(&mut h, |h| !h.state().run.is_running()),
        "the run ends"
    );
    let terminal = h.state().rec.live.merged_output.text();
    assert!(terminal.contains("counter = 1"), "terminal: {terminal:?}");
}

fn seeded_run_saved_and_loaded_again() {
    let mut h = harness(GuiArgs {
        mode: Some(lab::Mode::Seeded),
        seed: Some(5),
        ..counter_by_hand()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && h.state().rec.len() > 10));
    // Seed 5 interleaves read, read, write, write (see `forkscope run
    // --schedule seeded --seed 5`).
    let lost = "LOST UPDATE: main.1 read 0, wrote 1 over 1";
    assert!(
        wait_for(&mut h, |h| has_label(h, lost)),
        "seed 5 loses an update"
    );
    let schedule = h.state().gated.as_ref().map(|g| g.schedule.clone());

    let dir = std::env::temp_dir().join(format!("forkscope-gui-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join("seed5.schedule");
    h.get_by_label(lab::SAVE_SCHEDULE).click();
    h.run_steps(2);
    h.state_mut().step_bar.save_path = path.display().to_string();
    h.run_steps(1);
    h.get_by_label("Save").click();
    h.run_steps(2);
    assert!(path.exists(), "saved: {:?}", h.state().status);

    // Loading replays it (in step mode) to the same end.
    h.state_mut().command(Command::LoadSchedule(path.clone()));
    assert!(wait_for(&mut h, |h| h.state().mode == lab::Mode::Step
        && !h.state().run.is_running()
        && h.state().rec.len() > 10));
    assert!(
        wait_for(&mut h, |h| has_label(h, lost)),
        "the same lost update"
    );
    assert_eq!(
        h.state().gated.as_ref().map(|g| g.schedule.clone()),
        schedule,
        "the same steps in the same order"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process that writes a shared value as fast as it can, forever.
const FLOOD: &str = r#"
name = "flood"
title = "An event flood"
explain = "One process writes a shared value forever."
source = """
while True:
    v.value += 1
"""

[values]
v = 0

[roles.main]
steps = [{ loop = [{ write = "v", value = "v + 1", line = 2 }] }]
"#;

/// A real flood on small memory budgets: the oldest events are let go
/// while the newest stay, and the view can still be scrubbed to the start
/// and to the middle of the run (which shows the value of then).
fn a_flood_keeps_memory_bounded_and_scrubbing_works() {
    const LOG_BUDGET: usize = 256 << 10;
    let dir = std::env::temp_dir().join(format!("forkscope-gui-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join("flood.toml");
    std::fs::write(&path, FLOOD).expect("the scenario is written");
    let mut h = harness(GuiArgs {
        scenario: Some(path.display().to_string()),
        ..GuiArgs::default()
    });
    let _ = std::fs::remove_dir_all(&dir);
    h.state_mut().rec_budgets_bytes = (LOG_BUDGET, 4 << 20);
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(
        wait_for(&mut h, |h| h.state().rec.log.first_kept() > 20_000),
        "the oldest events are let go: {} events",
        h.state().rec.len()
    );
    h.get_by_label(controls::STOP).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()));
    let rec = &h.state().rec;
    assert!(
        rec.log.kept_bytes() <= LOG_BUDGET,
        "{} bytes kept",
        rec.log.kept_bytes()
    );
    let (t0, t1) = rec.t_range().expect("events");
    let total = rec.len();
    let last = match &rec.live.values["v"].current {
        Value::Int(v) => *v,
        other => panic!("v is {other:?}"),
    };
    assert!(last > 1000, "the flood wrote {last} times");

    // The start: nothing had happened yet.
    h.state_mut().command(Command::Seek(t0));
    h.run_steps(2);
    assert!(h.state().view_world().events_applied <= 1);
    // The middle: a World from then, with the value of then.
    h.state_mut().command(Command::Seek(t0 + (t1 - t0) / 2));
    h.run_steps(2);
    let mid = h.state().view_world();
    assert!(
        mid.events_applied > 0 && (mid.events_applied as usize) < total,
        "{} of {total} events",
        mid.events_applied
    );
    let then = match mid.values.get("v").map(|v| &v.current) {
        Some(Value::Int(v)) => *v,
        other => panic!("v is {other:?} in the middle"),
    };
    assert!(
        0 < then && then < last,
        "v = {then} in the middle, {last} at the end"
    );
    assert!(
        has_label(&h, &format!("shared v = {then}")),
        "the stage shows the value of then"
    );
    let gone = h.state().rec.log.first_kept();
    assert!(
        has_label(&h, &inspector::thinned_note(gone)),
        "the inspector says older events are gone"
    );
}

fn seeded_deadlock_is_drawn() {
    let mut h = harness(GuiArgs {
        scenario: Some("deadlock-two-locks".into()),
        mode: Some(lab::Mode::Seeded),
        seed: Some(5),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    let cycle = "DEADLOCK: main.1 holds a, waits for b; main.2 holds b, waits for a";
    assert!(
        wait_for(&mut h, |h| has_label(h, cycle)),
        "the cycle is named"
    );
    assert!(
        wait_for(&mut h, |h| !h.state().run.is_running()),
        "and the run stopped"
    );
    let arrows: Vec<(String, Option<String>, String)> = h
        .state()
        .deadlock_cycle
        .iter()
        .map(|e| (e.waiter.clone(), e.lock.clone(), e.holder.clone()))
        .collect();
    assert_eq!(
        arrows,
        [
            ("main.1".into(), Some("b".into()), "main.2".into()),
            ("main.2".into(), Some("a".into()), "main.1".into()),
        ],
        "drawn as process → lock → holder"
    );
}

/// While `threads-sing-dance` runs, the timeline has a lane for each of
/// main's two threads, right under main's lane.
fn threads_get_timeline_lanes_under_their_process() {
    let mut h = harness(GuiArgs {
        scenario: Some("threads-sing-dance".into()),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    let lane = forkscope::app::timeline::lane_label;
    assert!(
        wait_for(&mut h, |h| has_label(h, &lane("main.t1"))
            && has_label(h, &lane("main.t2"))),
        "a lane per thread"
    );
    let y = |label: &str| h.get_by_label(&lane(label)).rect().center().y;
    let (main, t1, t2) = (y("main"), y("main.t1"), y("main.t2"));
    assert!(main < t1 && t1 < t2, "under main: {main} {t1} {t2}");
    let x = |label: &str| h.get_by_label(&lane(label)).rect().left();
    assert!(x("main.t1") > x("main"), "indented");
    // Their lanes ran: each thread slept between its lines.
    assert!(wait_for(&mut h, |h| h
        .state()
        .rec
        .lanes
        .get("main.t2")
        .is_some_and(|l| l
            .states
            .iter()
            .any(|s| s.what == LaneState::Sleeping))));
    assert!(
        wait_for(&mut h, |h| !h.state().run.is_running()),
        "the run ends"
    );
}

/// The Many runs tab: `runs` seeded runs from seed 1, started with the
/// button whose label ends in `count` (as "(2 × 10)"), to the end.
fn many_seeded_runs(h: &mut Harness<'static, App>, runs: u32, count: &str) -> many::Tally {
    h.get_by_label(controls::MANY_RUNS_TAB).click();
    h.run_steps(2);
    {
        let app = h.state_mut();
        app.many.runs = runs;
        app.many.seeded = true;
        app.many.first_seed = 1;
    }
    h.run_steps(2);
    h.get_by_label(&format!("{} {count}", many::START)).click();
    assert!(wait_for(h, many_runs_finished), "the runs finish");
    h.run_steps(2);
    h.state().many.tally.clone().expect("a tally")
}

fn many_runs_finished(h: &Harness<'static, App>) -> bool {
    h.state().many.tally.as_ref().is_some_and(|t| t.finished)
}

fn many_runs_show_a_histogram_lock_off_and_on() {
    let mut h = harness(GuiArgs {
        scenario: Some("unlocked-counter".into()),
        set: vec!["workers=2".into(), "adds=1".into()],
        ..GuiArgs::default()
    });
    h.run_steps(2);
    let tally = many_seeded_runs(&mut h, 10, "(2 × 10)");
    let counts = |k: usize| -> Vec<(String, u64)> {
        tally.series[k]
            .counts
            .iter()
            .map(|(o, n)| (many::outcome_label(o), *n))
            .collect()
    };
    assert_eq!(tally.series.len(), 2, "lock off and lock on");
    let off = counts(0);
    assert_eq!(off.iter().map(|(_, n)| n).sum::<u64>(), 10, "{off:?}");
    assert!(
        off.iter().any(|(o, _)| o == "counter = 1"),
        "without the lock some runs lose an update: {off:?}"
    );
    assert_eq!(
        counts(1),
        [("counter = 2".to_string(), 10)],
        "never with it"
    );
    assert!(has_label(&h, "counter = 1") && has_label(&h, "counter = 2"));
    assert!(has_label(&h, "10 runs (100 %)"), "the table says it too");
    let lost = off
        .iter()
        .filter(|(o, _)| o != "counter = 2")
        .map(|(_, n)| n)
        .sum::<u64>();
    assert!(
        has_label(
            &h,
            &format!(
                "With the lock every run ended with counter = 2; without it, {lost} of 10 runs did not."
            )
        ),
        "one sentence sums it up"
    );
    assert!(!h.state().many.is_running(), "the thread is done");
}

/// A `.py` opened in the app runs in Many runs as `forkscope stats` runs
/// it (traced, seeded): the histogram of its shared value's final values.
fn many_runs_of_a_python_program_show_its_histogram() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join("value_unlocked.py");
    let mut h = harness(GuiArgs::default());
    h.run_steps(2);
    h.state_mut()
        .command(Command::File(files::FileCmd::Open(script.clone())));
    h.run_steps(3);
    assert!(h.state().picked_python(), "{:?}", h.state().files.error);
    let tally = many_seeded_runs(&mut h, 4, "(4)");
    assert_eq!(tally.error, None, "{:?}", h.state().status);
    assert_eq!(tally.series.len(), 1, "a program has no lock switch");
    let s = &tally.series[0];
    let runs: u64 = s.counts.values().sum();
    assert_eq!((s.done, runs, s.timed_out), (4, 4, 0), "{s:?}");
    for (o, n) in &s.counts {
        let label = many::outcome_label(o);
        // value_unlocked.py: 4 workers add 50 each without the lock.
        let fin: i64 = label
            .strip_prefix("counter = ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("the outcome is counter's final value: {label}"));
        assert!((1..=200).contains(&fin), "{label}");
        assert!(has_label(&h, &label), "the table shows {label}");
        let pct = 100.0 * *n as f64 / 4.0;
        let row = format!("{n} runs ({pct:.0} %)");
        assert!(h.query_all_by_label(&row).count() >= 1, "{label}: {row}");
    }
    assert!(has_label(&h, "4 runs done (seeded schedules, seeds 1…4)"));
    assert!(!h.state().many.is_running(), "the thread is done");

    // `forkscope --trace PROG.py --many-runs 2`: the same, at once.
    let mut h = harness(GuiArgs {
        trace: Some(script),
        many_runs: Some(2),
        ..GuiArgs::default()
    });
    assert!(wait_for(&mut h, many_runs_finished), "2 runs finish");
    let tally = h.state().many.tally.clone().expect("a tally");
    let runs: u64 = tally.series.iter().flat_map(|s| s.counts.values()).sum();
    assert_eq!((tally.error, runs), (None, 2));
}

// ---- recordings ------------------------------------------------------------

/// A run recorded by `forkscope run --record` opens on the stage with
/// nothing running: its processes and its final value, and scrubbing back
/// shows an earlier value. "Save recording" after a live run writes a file
/// that reads back as the same events, and opens again the same way.
fn a_recording_opens_on_the_stage_and_saves_back() {
    let dir = std::env::temp_dir().join(format!("forkscope-gui-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let recorded = dir.join("cli.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forkscope"))
        .args(["run", "locked-counter", "--time-scale", "0.1", "--record"])
        .arg(&recorded)
        .output()
        .expect("forkscope runs");
    assert!(out.status.success(), "{out:?}");
    let events = forkscope::trace_file::read(&recorded).expect("a recording");

    let mut h = harness(GuiArgs {
        open: Some(recorded.clone()),
        ..GuiArgs::default()
    });
    h.run_steps(3);
    assert!(
        matches!(h.state().run, RunState::Finished { .. }),
        "nothing runs"
    );
    assert_eq!(h.state().rec.len(), events.len(), "every event is in");
    assert!(has_label(&h, "shared v = 20"), "the final value");
    for id in ["main", "main.1", "main.2"] {
        assert!(has_label(&h, id), "{id} is on the stage");
    }
    let first_write = events
        .iter()
        .find(|e| e.body.kind() == "write")
        .map(|e| e.t_ns)
        .expect("the workers wrote");
    h.state_mut().command(Command::Seek(first_write - 1));
    h.run_steps(2);
    assert!(
        has_label(&h, "shared v = 0"),
        "scrubbed back before any add"
    );

    // A live run, saved with the button, reads back as what the app holds.
    let mut h = harness(GuiArgs {
        time_scale: Some(0.1),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && h.state().rec.len() > 10));
    let saved = dir.join("saved.jsonl");
    h.state_mut().command(Command::SaveRecording(saved.clone()));
    h.run_steps(2);
    let back = forkscope::trace_file::read(&saved).expect("the saved file reads back");
    assert_eq!(back.as_slice(), h.state().rec.log.kept(), "the same events");
    assert!(
        h.state()
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with(&format!("saved {} events", back.len()))),
        "{:?}",
        h.state().status
    );
    // Opened from the picker's "Open" field, it shows the same end.
    h.state_mut()
        .command(Command::Pick(saved.display().to_string()));
    h.run_steps(3);
    assert_eq!(h.state().opened.as_deref(), Some(saved.as_path()));
    assert!(has_label(&h, "shared v = 20"));

    // A broken recording is one sentence with its line, not a crash.
    let broken = dir.join("broken.jsonl");
    std::fs::write(&broken, "{\"t_ns\":1}\n").expect("write");
    let err = App::new(&GuiArgs {
        open: Some(broken.clone()),
        ..GuiArgs::default()
    })
    .err()
    .expect("an error");
    assert!(
        err.starts_with(&format!("{}:1: ", broken.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Slow motion: pick 0.1× in the toolbar, replay a recording from its
/// start; the picture moves forward at a tenth of real time (never faster),
/// says so, and reaches the end at last when sped up to 1×.
fn slow_motion_replays_a_recording_from_a_moment() {
    let dir = std::env::temp_dir().join(format!("forkscope-gui-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let recorded = dir.join("uc.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forkscope"))
        .args([
            "run",
            "unlocked-counter",
            "--set",
            "workers=2",
            "--set",
            "adds=20",
        ])
        // Seeded: the same lost updates every time.
        .args(["--schedule", "seeded", "--seed", "1"])
        .arg("--record")
        .arg(&recorded)
        .output()
        .expect("forkscope runs");
    assert!(out.status.success(), "{out:?}");
    let mut h = harness(GuiArgs {
        open: Some(recorded),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    let (t0, t1) = h.state().rec.t_range().expect("events");

    // The speed menu, then 0.1×.
    h.get_by_label(controls::REPLAY_SPEED).click();
    h.run_steps(2);
    h.get_by_label(&controls::speed_label(0.1)).click();
    h.run_steps(2);
    assert_eq!(h.state().time.speed, 0.1);
    let started = Instant::now();
    h.get_by_label(controls::REPLAY).click();
    h.run_steps(1);
    let from = h.state().time.cursor_t_ns;
    assert!(from <= t0 + 1_000_000, "replay starts at the start");
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    let advanced = h.state().time.cursor_t_ns.saturating_sub(from);
    let real = started.elapsed().as_nanos() as u64;
    assert!(advanced > 0, "the replay moves");
    assert!(
        advanced <= real / 10 + 1_000,
        "at most a tenth of real time: {advanced} ns in {real} ns"
    );
    assert!(
        h.state().time.follow
            || has_label(
                &h,
                &format!(
                    "▶ replaying at 0.1×: t = {:.3} s",
                    h.state().time.cursor_t_ns.saturating_sub(t0) as f64 / 1e9
                )
            ),
        "the status says it replays slowly"
    );

    // At 1× it reaches the end and shows the last moment again.
    h.state_mut().command(Command::SetSpeed(1.0));
    let reached = wait_for(&mut h, |h| h.state().time.follow);
    assert!(
        reached,
        "the replay ends (run lasted {} ms)",
        (t1 - t0) / 1_000_000
    );

    // "stop at ⚠": a replay from the start pauses at the first lost update.
    let first_race = h
        .state()
        .rec
        .log
        .kept()
        .iter()
        .find(|e| e.body.kind() == "race")
        .map(|e| e.t_ns)
        .expect("a seeded run with 2 × 20 unlocked adds loses updates");
    h.get_by_label(controls::AUTO_PAUSE).click();
    h.run_steps(2);
    assert!(h.state().time.auto_pause);
    h.get_by_label(controls::REPLAY).click();
    let paused = wait_for(&mut h, |h| !h.state().time.playing);
    assert!(paused, "the replay pauses by itself");
    assert_eq!(h.state().time.cursor_t_ns, first_race, "at the lost update");
    let status = h.state().status.clone().unwrap_or_default();
    assert!(
        status.starts_with("paused at a lost update: main."),
        "{status}"
    );
    assert!(has_label(&h, &status), "the toolbar says it");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- issue 11: files, settings, keys, presenter panels ---------------------

/// A temporary folder for one test, removed when dropped.
struct TestDir(std::path::PathBuf);

impl TestDir {
    fn new(what: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("forkscope-gui-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A built-in's text saved as a scenario file.
fn scenario_file(dir: &TestDir, name: &str) -> std::path::PathBuf {
    let b = forkscope::scenario::catalog::find(name).expect("a built-in");
    let path = dir.0.join(format!("my-{name}.toml"));
    std::fs::write(&path, b.text).expect("write the scenario");
    path
}

/// Opening a file while a run goes on asks first (and keeping the run
/// keeps it); yes stops the run, opens the file on a clean stage and puts
/// it in the File menu's recent files, from where it opens again; a file
/// that cannot be opened says why over the stage, in presenter mode too.
fn opening_a_file_asks_first_while_a_run_goes_on() {
    let dir = TestDir::new("open");
    let file = scenario_file(&dir, "fork-print");
    let mut h = harness(GuiArgs {
        time_scale: Some(20.0),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| h.state().rec.len() > 5));
    assert!(h.state().run.is_running());

    h.state_mut()
        .command(Command::File(files::FileCmd::Open(file.clone())));
    h.run_steps(3);
    assert!(has_label(&h, "A run is going on"), "the question shows");
    assert!(h.state().run.is_running(), "nothing stopped without asking");
    h.get_by_label(files::KEEP_RUNNING).click();
    h.run_steps(3);
    assert!(h.state().run.is_running(), "kept");
    assert!(!has_label(&h, "A run is going on"));
    assert_eq!(picked_name(&h), "locked-counter");

    h.state_mut()
        .command(Command::File(files::FileCmd::Open(file.clone())));
    h.run_steps(3);
    h.get_by_label(files::STOP_AND_OPEN).click();
    h.run_steps(3);
    assert!(!h.state().run.is_running(), "stopped");
    assert_eq!(picked_name(&h), "fork-print");
    assert!(h.state().rec.is_empty(), "a clean stage for the new file");
    assert!(!has_label(&h, "main.1"), "no old process on the stage");
    let canonical = std::fs::canonicalize(&file).expect("the file");
    assert_eq!(h.state().files.recent.first(), Some(&canonical));

    // The File menu lists it; a click opens it again.
    h.get_by_label(controls::RESTART).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && !h.state().rec.is_empty()));
    h.state_mut()
        .command(Command::Pick("locked-counter".into()));
    h.run_steps(2);
    h.get_by_label(files::FILE_MENU).click();
    h.run_steps(2);
    let name = file
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .to_string();
    h.get_by_label(&name).click();
    h.run_steps(3);
    assert_eq!(picked_name(&h), "fork-print", "reopened from the menu");

    // A broken file: the error shows over the stage (presenter: no picker).
    h.state_mut().command(Command::TogglePresenter);
    let broken = dir.0.join("broken.toml");
    std::fs::write(&broken, "name = \"x\"\n[[process\n").expect("write");
    h.state_mut()
        .command(Command::File(files::FileCmd::Open(broken.clone())));
    h.run_steps(3);
    assert!(
        has_label(&h, &format!("⚠ {}", files::CANNOT_OPEN)),
        "the error is on screen"
    );
    let e = h.state().files.error.clone().expect("an error");
    assert!(e.contains("broken.toml:"), "{e}");
    assert!(has_label(&h, &e), "its text too");
    assert_eq!(picked_name(&h), "fork-print", "the old pick stays");
    h.get_by_label("OK").click();
    h.run_steps(2);
    assert!(h.state().files.error.is_none());
    assert!(!has_label(&h, &format!("⚠ {}", files::CANNOT_OPEN)));

    // "Open…" without a native dialog on this machine: a path field.
    if !files::native_dialog_available() {
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::O);
        h.run_steps(3);
        assert!(has_label(&h, files::OPEN_BY_PATH), "the path window shows");
        assert!(has_label(&h, &name), "with the recent files");
        h.get_by_label("Cancel").click();
        h.run_steps(2);
        assert!(!has_label(&h, files::OPEN_BY_PATH));
    }
}

/// Picking another scenario from the list takes the old run off the stage.
fn picking_another_scenario_clears_the_stage() {
    let mut h = harness(GuiArgs {
        time_scale: Some(0.1),
        ..GuiArgs::default()
    });
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && h.state().rec.len() > 10));
    assert!(has_label(&h, "main.2"));
    h.get_by_label("A shared counter without a lock loses updates")
        .click_accesskit();
    h.run_steps(3);
    assert_eq!(picked_name(&h), "unlocked-counter");
    assert!(h.state().rec.is_empty(), "the old run is gone");
    assert!(!has_label(&h, "main.2"), "nothing of it on the stage");
    assert!(matches!(h.state().run, RunState::Idle));
}

/// A storage in memory, as eframe's file is on disk.
#[derive(Default)]
struct MemStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

/// What a user set comes back at the next launch (scenario, parameters,
/// mode, seed, presenter, panels, zoom, recent files), except what the
/// command line says; tests never touch the real settings file.
fn settings_come_back_at_the_next_launch() {
    let mut h = harness(GuiArgs::default());
    h.run_steps(2);
    assert!(
        !h.state().persist,
        "a test app neither reads nor writes settings"
    );
    h.get_by_label("A shared counter without a lock loses updates")
        .click_accesskit();
    h.run_steps(2);
    h.state_mut()
        .command(Command::SetParam("workers".into(), Value::Int(3)));
    h.state_mut().command(Command::SetMode(lab::Mode::Seeded));
    h.state_mut().command(Command::SetSeed(7));
    h.state_mut().command(Command::TogglePresenter);
    h.state_mut()
        .command(Command::View(settings::ViewCmd::TogglePanel(
            settings::Panel::Source,
        )));
    h.state_mut().command(Command::Zoom(1.3));
    h.run_steps(3);
    let saved = h.state().settings();

    let mut storage = MemStorage::default();
    eframe::set_value(&mut storage, settings::KEY, &saved);
    let back: settings::Settings =
        eframe::get_value(&storage, settings::KEY).expect("the settings read back");
    assert_eq!(back, saved);

    let mut next = App::new(&GuiArgs::default()).expect("the app starts");
    next.restore_settings(back.clone(), &GuiArgs::default());
    let mut h2 = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), next);
    h2.run_steps(3);
    let s = h2.state();
    assert_eq!(picked_name(&h2), "unlocked-counter");
    assert_eq!(
        s.picked.as_ref().and_then(|p| p.params.get("workers")),
        Some(&Value::Int(3))
    );
    assert_eq!(s.mode, lab::Mode::Seeded);
    assert_eq!(s.seed, 7);
    assert!(s.presenter);
    assert!(s.panels.presenter.source, "the source panel stays shown");
    assert!((s.zoom - 1.3).abs() < 1e-6);
    assert!(has_label(&h2, "Source"), "and is on screen");

    // The command line wins over what was remembered.
    let args = GuiArgs {
        scenario: Some("fork-print".into()),
        mode: Some(lab::Mode::Free),
        ..GuiArgs::default()
    };
    let mut told = App::new(&args).expect("the app starts");
    told.restore_settings(back, &args);
    assert_eq!(
        told.picked
            .as_ref()
            .map(|p| p.loaded.scenario.name.as_str()),
        Some("fork-print")
    );
    assert_eq!(told.mode, lab::Mode::Free);
    assert!(told.presenter, "presenter was not on the command line");
}

/// "?" shows every key; Esc closes it.
fn question_mark_lists_every_key() {
    let mut h = harness(GuiArgs::default());
    h.run_steps(2);
    assert!(!has_label(&h, help::KEYS_TITLE));
    h.key_press(egui::Key::Questionmark);
    h.run_steps(3);
    assert!(has_label(&h, help::KEYS_TITLE), "the overlay shows");
    for (keys, what) in help::key_table() {
        assert!(has_label(&h, &keys), "{keys} is listed");
        assert!(has_label(&h, &what), "{what} is said");
    }
    for must in [
        "Space", "F11", "P", "Ctrl+O", "1 – 9", "U", "S", "T", "O", "I",
    ] {
        assert!(has_label(&h, must), "{must} is listed");
    }
    h.key_press(egui::Key::Escape);
    h.run_steps(3);
    assert!(!has_label(&h, help::KEYS_TITLE), "Esc closes it");
    h.get_by_label(help::HELP_BUTTON).click();
    h.run_steps(3);
    assert!(
        has_label(&h, help::KEYS_TITLE),
        "the toolbar's ? opens it too"
    );
}

/// F11 is full screen and nothing else; P is the presenter look, the same
/// stage as `--presenter`.
fn f11_is_full_screen_and_p_the_presenter_look() {
    let mut h = harness(GuiArgs::default());
    h.run_steps(3);
    let desk = h.state().stage.last_rect.expect("a stage");
    // Down, a frame (whose output asks the window), then up.
    h.key_down(egui::Key::F11);
    h.step();
    let asked = h
        .output()
        .viewport_output
        .values()
        .flat_map(|v| v.commands.iter())
        .any(|c| *c == egui::ViewportCommand::Fullscreen(true));
    h.key_up(egui::Key::F11);
    h.run_steps(2);
    assert!(h.state().fullscreen);
    assert!(asked, "the window was asked to go full screen");
    assert!(!h.state().presenter, "the look stays");
    let still = h.state().stage.last_rect.expect("a stage");
    assert!((still.min - desk.min).length() < 1.0 && (still.max - desk.max).length() < 1.0);

    let mut started = harness(GuiArgs {
        presenter: true,
        ..GuiArgs::default()
    });
    started.run_steps(4);
    let want = started.state().stage.last_rect.expect("a stage");
    h.key_press(egui::Key::P);
    h.run_steps(4);
    assert!(h.state().presenter);
    assert!(h.state().fullscreen, "full screen stays");
    let got = h.state().stage.last_rect.expect("a stage");
    assert!(
        (got.min - want.min).length() < 1.0 && (got.max - want.max).length() < 1.0,
        "P: {got:?}, --presenter: {want:?}"
    );
    h.key_press(egui::Key::F11);
    h.run_steps(2);
    assert!(!h.state().fullscreen);
    assert!(h.state().presenter, "the look stays when full screen ends");
}

/// Presenter mode: the output strip shows whole lines (at least four),
/// each panel comes and goes with its key or the Panels menu, and "+"
/// makes the stage's own words bigger.
fn presenter_panels_one_by_one_and_zoom_on_the_stage() {
    // At 1920×1080 (at 1280×720 this tree fills the stage already: "+"
    // cannot grow it without running off); a small tree that always ends the
    // same way (room to grow).
    let app = App::new(&GuiArgs {
        presenter: true,
        scenario: Some("process-join".into()),
        ..GuiArgs::default()
    })
    .expect("the app starts");
    let mut h = Harness::builder()
        .with_size(egui::vec2(1920.0, 1080.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app);
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && h.state().rec.len() > 5));
    h.run_steps(3);
    // The strip under the stage: whole lines of the output's font.
    let stage = h.state().stage.last_rect.expect("a stage");
    let window_h = h.ctx.content_rect().height();
    let row = h.ctx.fonts_mut(|f| {
        f.row_height(&egui::FontId::monospace(
            forkscope::app::output::PRESENTER_FONT_PT,
        ))
    });
    let strip = window_h - stage.max.y - 8.0;
    assert!(
        strip >= 4.0 * row,
        "the output strip is {strip} pt: {} lines of {row} pt",
        strip / row
    );
    assert!(!has_label(&h, "Source"), "the stage alone at first");
    assert!(!has_label(&h, "timeline"));

    h.key_press(egui::Key::S);
    h.run_steps(3);
    assert!(has_label(&h, "Source"), "S shows the source");
    assert!(!has_label(&h, "Scenarios"), "and only it");
    h.key_press(egui::Key::T);
    h.run_steps(3);
    assert!(has_label(&h, "timeline"), "T shows the timeline");
    h.key_press(egui::Key::I);
    h.run_steps(3);
    assert!(has_label(&h, "Inspector") || h.state().panels.presenter.inspector);
    h.key_press(egui::Key::S);
    h.key_press(egui::Key::T);
    h.key_press(egui::Key::I);
    h.run_steps(3);
    assert!(!has_label(&h, "Source") && !has_label(&h, "timeline"));
    // The menu, with a checkbox per panel.
    h.get_by_label(controls::PANELS).click();
    h.run_steps(2);
    h.get_by_label("Source  (S)").click();
    h.run_steps(3);
    assert!(h.state().panels.presenter.source);
    assert!(has_label(&h, "Source"), "shown from the menu");
    h.key_press(egui::Key::Escape);
    h.key_press(egui::Key::S);
    h.run_steps(3);

    // "+": the stage's type grows on screen (not only the toolbar's).
    let key_px = |h: &Harness<'static, App>| {
        h.state().stage.last_layout.as_ref().expect("a layout").k * h.ctx.pixels_per_point()
    };
    let k0 = key_px(&h);
    h.key_press(egui::Key::Plus);
    h.run_steps(4);
    let k1 = key_px(&h);
    assert!(k1 > k0 * 1.05, "stage type {k0} px → {k1} px after +");
    h.key_press(egui::Key::Minus);
    h.run_steps(2);
    h.key_press(egui::Key::Minus);
    h.run_steps(4);
    let k2 = key_px(&h);
    assert!(k2 < k1, "− makes it smaller: {k1} → {k2} px");
}

/// On a 1280×720 projector, after a run (when the replay controls show
/// too), the toolbar's buttons sit on one line and none covers another;
/// at the desk (1280×800) none covers another and the stage starts under
/// them (more sizes and run states: tests/toolbar.rs).
fn the_presenter_toolbar_is_one_line_at_720p() {
    toolbar_after_a_run(true, 720.0);
    toolbar_after_a_run(false, 800.0);
}

fn toolbar_after_a_run(presenter: bool, height: f32) {
    let app = App::new(&GuiArgs {
        presenter,
        scenario: Some("process-join".into()),
        ..GuiArgs::default()
    })
    .expect("the app starts");
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, height))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app);
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()
        && !h.state().rec.is_empty()));
    h.run_steps(3);
    // Every one a user needs after a run is there, by its words.
    let mut labels = vec![
        controls::RUN,
        controls::RESTART,
        controls::PAUSE,
        controls::REPLAY,
        controls::PRESENTER,
        controls::PANELS,
    ];
    if !presenter {
        labels.extend([
            controls::STOP,
            controls::LIVE,
            "Free",
            "Step",
            "Seeded",
            files::FILE_MENU,
            help::HELP_BUTTON,
        ]);
    }
    for l in &labels {
        assert!(has_label(&h, l), "{l} is not on the toolbar");
    }
    let rects: Vec<(String, egui::Rect)> = (h.state().toolbar.items.iter())
        .map(|i| (i.id.clone(), i.rect))
        .collect();
    let stage = h.state().stage.last_rect.expect("a stage");
    let bottom = rects.iter().map(|r| r.1.bottom()).fold(0.0, f32::max);
    assert!(
        stage.top() >= bottom,
        "the stage starts over the toolbar: {rects:?}"
    );
    if presenter {
        // One line: the stage starts right under the buttons' row (a
        // second line would put it 20 pt lower).
        assert!(
            stage.top() - bottom < 14.0,
            "the stage starts {} pt under the toolbar: {rects:?}",
            stage.top() - bottom
        );
    }
    let top = rects[0].1.top();
    for (i, (a, ra)) in rects.iter().enumerate() {
        if presenter {
            assert!(
                (ra.top() - top).abs() < 8.0,
                "{a} is on another line: {ra:?}"
            );
        }
        for (b, rb) in &rects[i + 1..] {
            assert!(
                !ra.shrink(1.0).intersects(rb.shrink(1.0)),
                "{a} {ra:?} covers {b} {rb:?}"
            );
        }
    }
}

// ---- issue 10: a Python program in the app ----------------------------------

/// A main thread, a thread and a bare fork child, each waiting at a line
/// of its own: the thread at its `start()` (line 11), the child where it
/// forked (12), main at the `join` (16).
const MARKS_PY: &str = "import os
import threading
import time


def work():
    time.sleep(2)


t = threading.Thread(target=work, name=\"worker\")
t.start()
pid = os.fork()
if pid == 0:
    time.sleep(2)
    os._exit(0)
t.join()
os.waitpid(pid, 0)
print(\"done\")
";

/// The marker text after a source line: `◀ ID`.
fn marker(id: &str) -> String {
    format!("◀ {id}")
}

/// A `.py` opened with the app's Open (and `--trace`): the real file in the
/// source panel, ready to run; run, a marker per process and per thread at
/// the line each is on; the program's output and exit as `python3` gives
/// them. A missing file is an error on screen.
fn a_python_program_opens_with_its_source_and_markers() {
    let dir = TestDir::new("py");
    let script = dir.0.join("marks.py");
    std::fs::write(&script, MARKS_PY).expect("write the program");

    let mut h = harness(GuiArgs::default());
    h.run_steps(2);
    h.state_mut()
        .command(Command::File(files::FileCmd::Open(script.clone())));
    h.run_steps(3);
    assert!(
        h.state().files.error.is_none(),
        "{:?}",
        h.state().files.error
    );
    assert_eq!(picked_name(&h), "marks", "named after the file");
    assert!(h.state().picked_python());
    assert!(!h.state().run.is_running(), "ready, not running");
    for line in [
        "t = threading.Thread(target=work, name=\"worker\")",
        "pid = os.fork()",
        "    os._exit(0)",
        "print(\"done\")",
    ] {
        assert!(has_label(&h, line), "the source shows {line:?}");
    }

    let lines = |h: &Harness<'static, App>| {
        let w = &h.state().rec.live;
        let main = w.process("main");
        (
            main.and_then(|p| p.line),
            main.and_then(|p| p.threads.first()).and_then(|t| t.line),
            w.process("main.1").and_then(|p| p.line),
        )
    };
    h.get_by_label(controls::RUN).click();
    let there = wait_for(&mut h, |h| lines(h) == (Some(16), Some(11), Some(12)));
    assert!(
        there,
        "main at the join, the thread at start(), the child at the fork: {:?}",
        lines(&h)
    );
    h.run_steps(1);
    let shown = |h: &Harness<'static, App>, id: &str| h.query_all_by_label(&marker(id)).count();
    for id in ["main", "main.t1", "main.1"] {
        assert_eq!(shown(&h, id), 1, "one marker for {id} in the source");
    }
    assert!(wait_for(&mut h, |h| !h.state().run.is_running()));
    assert!(
        matches!(h.state().run, RunState::Finished { code: Some(0), .. }),
        "exit 0"
    );
    let terminal: String = h
        .state()
        .rec
        .live
        .merged_output
        .chunks
        .iter()
        .map(|c| c.text.as_str())
        .collect();
    assert_eq!(terminal, "done\n");
    h.run_steps(2);
    assert!(!has_label(&h, &marker("main.1")), "no marker once it ended");

    // `forkscope --trace FILE`: the same, ready to run.
    let h = harness(GuiArgs {
        trace: Some(script.clone()),
        ..GuiArgs::default()
    });
    assert!(h.state().picked_python());
    assert!(!h.state().run.is_running());

    // A program that is not there: one sentence, on screen.
    let mut h = harness(GuiArgs::default());
    h.run_steps(2);
    h.state_mut()
        .command(Command::File(files::FileCmd::Open(dir.0.join("gone.py"))));
    h.run_steps(3);
    let e = h.state().files.error.clone().expect("an error");
    assert!(e.contains("gone.py"), "{e}");
    // Over the stage, and next to the picker's Open field.
    assert!(h.query_all_by_label(&e).count() >= 1, "on screen");
    assert!(has_label(&h, &format!("⚠ {}", files::CANNOT_OPEN)));
    assert_eq!(picked_name(&h), "locked-counter", "the old pick stays");
}

/// `--mode step` does what the toolbar's Step does: the scenario's small
/// parameters (2 workers × 3 adds), except one given with `--set`.
fn step_mode_on_the_command_line_takes_the_small_parameters() {
    let app = |set: Vec<String>| {
        App::new(&GuiArgs {
            scenario: Some("unlocked-counter".into()),
            mode: Some(lab::Mode::Step),
            set,
            ..GuiArgs::default()
        })
        .expect("the app starts")
    };
    let params = |a: &App| {
        a.picked.as_ref().map(|p| {
            (
                p.params.get("workers").cloned(),
                p.params.get("adds").cloned(),
            )
        })
    };
    assert_eq!(
        params(&app(Vec::new())),
        Some((Some(Value::Int(2)), Some(Value::Int(3)))),
        "--mode step takes the step parameters"
    );
    assert_eq!(
        params(&app(vec!["workers=4".into()])),
        Some((Some(Value::Int(4)), Some(Value::Int(3)))),
        "--set wins over the step parameters"
    );
}

/// "+" on a stage with no room left (100 processes at 1280×720 in presenter
/// mode): the words cannot grow without landing on one another, and the
/// status says so rather than nothing happening.
fn plus_on_a_full_stage_says_why_the_words_stay() {
    let app = App::new(&GuiArgs {
        scenario: Some("fan-out-stress".into()),
        presenter: true,
        ..GuiArgs::default()
    })
    .expect("the app starts");
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0 / 1.6, 720.0 / 1.6))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app);
    h.run_steps(2);
    h.get_by_label(controls::RUN).click();
    assert!(
        wait_for(&mut h, |h| h
            .state()
            .stage
            .last_layout
            .as_ref()
            .is_some_and(|l| l.full)),
        "the stage fills up"
    );
    h.state_mut().command(Command::Zoom(1.1));
    h.run_steps(2);
    let status = h.state().status.clone().unwrap_or_default();
    assert!(status.contains("the stage is full"), "after +: {status:?}");
    h.state_mut().command(Command::Stop);
    h.run_steps(3);
}

/// unlocked-counter's value card counts the updates lost (2 × 100 adds −
/// final), not the writers' `race` events (a write that found a smaller
/// value than it read puts updates back: about half of them), and the
/// ending caption says the same number.
fn the_lost_update_count_is_adds_minus_final() {
    let dir = std::env::temp_dir().join(format!("forkscope-gui-lost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let recorded = dir.join("uc.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forkscope"))
        .args(["run", "unlocked-counter", "--record"])
        .arg(&recorded)
        .output()
        .expect("forkscope runs");
    assert!(out.status.success(), "{out:?}");
    let mut h = harness(GuiArgs {
        open: Some(recorded.clone()),
        ..GuiArgs::default()
    });
    h.run_steps(3);
    let world = h.state().rec.live.clone();
    let v = &world.values["counter"];
    let lost = 200 - v.current.as_i64().expect("an int");
    assert_eq!(v.updates_lost(), lost);
    assert!(lost > 1, "2 × 100 adds with a 1 ms gap lose updates");
    let races = v.lost_updates.len() as i64;
    println!(
        "counter = {:?}: {lost} updates lost in {races} race events",
        v.current
    );
    assert!(
        has_label(&h, &format!("⚠ {lost} UPDATES LOST")),
        "the card says {lost}"
    );
    let ending = forkscope::app::captions::caption(&world).unwrap_or_default();
    assert!(
        ending.contains(&format!("({lost} lost updates)")),
        "{ending}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
