//! The toolbar, measured as `--dump-layout` measures it: at every window
//! size the layout test covers (presenter 1280×720 and 1920×1080, desk
//! 1280×800) and in every run state (idle, running, paused, finished,
//! replaying, step mode, seeded, quiz on, a long message, presenter with
//! its side panels), no two of its widgets overlap, every one is inside
//! the window, and the status keeps room to be read.
//!
//! Its own `main` (`harness = false`) as tests/gui.rs: sessions start
//! `current_exe() __runner`, which here is this binary. `run_steps`, never
//! `run()`: a live run keeps repainting.

mod harness;

use harness::wait_for;

use egui_kittest::Harness;
use forkscope::app::lab::Mode;
use forkscope::app::layout::Item;
use forkscope::app::{App, Command, GuiArgs, controls};
use std::process::ExitCode;

fn main() -> ExitCode {
    let tests: &[(&str, fn())] = &[(
        "the_toolbar_never_overprints_at_any_size_or_run_state",
        the_toolbar_never_overprints_at_any_size_or_run_state,
    )];
    harness::main(tests)
}

struct Size {
    name: &'static str,
    w_px: f32,
    h_px: f32,
    presenter: bool,
}

const SIZES: &[Size] = &[
    Size {
        name: "presenter 1280x720",
        w_px: 1280.0,
        h_px: 720.0,
        presenter: true,
    },
    Size {
        name: "presenter 1920x1080",
        w_px: 1920.0,
        h_px: 1080.0,
        presenter: true,
    },
    Size {
        name: "desk 1280x800",
        w_px: 1280.0,
        h_px: 800.0,
        presenter: false,
    },
];

fn harness(args: GuiArgs, size: &Size) -> Harness<'static, App> {
    let app = App::new(&args).expect("the app starts");
    Harness::builder()
        .with_size(egui::vec2(size.w_px, size.h_px))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app)
}

fn overlap(a: &[f32; 4], b: &[f32; 4]) -> bool {
    // Touching is fine; a pixel of overlap is not.
    a[0] < b[2] - 1.0 && b[0] < a[2] - 1.0 && a[1] < b[3] - 1.0 && b[1] < a[3] - 1.0
}

/// What is wrong with the toolbar as drawn in the last frame.
fn problems(h: &Harness<'static, App>, size: &Size) -> Vec<String> {
    let px = h.ctx.pixels_per_point();
    let window = h.ctx.content_rect().size() * px;
    let mut found = Vec::new();
    if (window.x - size.w_px).abs() > 1.0 || (window.y - size.h_px).abs() > 1.0 {
        found.push(format!("the window is {window:?} px, not {}", size.name));
    }
    let items: Vec<Item> = h.state().toolbar.layout_items(px);
    for want in ["toolbar.status", "toolbar.presenter", "toolbar.panels"] {
        if !items.iter().any(|i| i.id == want) {
            found.push(format!("no {want}"));
        }
    }
    if !items
        .iter()
        .any(|i| i.id == "toolbar.run" || i.id == "toolbar.stop")
    {
        found.push("neither Run nor Stop".into());
    }
    for it in &items {
        let r = it.rect;
        if r[0] < -0.5 || r[1] < -0.5 || r[2] > size.w_px + 0.5 || r[3] > size.h_px + 0.5 {
            found.push(format!("{} outside the window: {r:?}", it.id));
        }
    }
    for (i, a) in items.iter().enumerate() {
        for b in &items[i + 1..] {
            if overlap(&a.rect, &b.rect) {
                found.push(format!(
                    "{} {:?} overlaps {} {:?}",
                    a.id, a.rect, b.id, b.rect
                ));
            }
        }
    }
    // The status is whole, or cut with at least MIN_STATUS_W to read.
    if let Some(s) = items.iter().find(|i| i.id == "toolbar.status") {
        let w_pt = (s.rect[2] - s.rect[0]) / px;
        let need = h.state().toolbar.status_need;
        if w_pt + 1.0 < need.min(controls::MIN_STATUS_W) {
            found.push(format!(
                "the status has {w_pt:.0} pt of the {need:.0} it needs: too little to read"
            ));
        }
    }
    // Nothing of the toolbar over the stage.
    if let Some(stage) = h.state().stage.last_rect {
        let st = [
            stage.min.x * px,
            stage.min.y * px,
            stage.max.x * px,
            stage.max.y * px,
        ];
        for it in &items {
            if overlap(&it.rect, &st) {
                found.push(format!("{} is over the stage", it.id));
            }
        }
    }
    found
}

fn the_toolbar_never_overprints_at_any_size_or_run_state() {
    let mut failures = Vec::new();
    for size in SIZES {
        let mut check = |h: &Harness<'static, App>, state: &str| {
            let p = problems(h, size);
            // Rows: centres more than 8 pt apart.
            let mut rows: Vec<f32> = (h.state().toolbar.items.iter())
                .map(|i| i.rect.center().y)
                .collect();
            rows.sort_by(f32::total_cmp);
            rows.dedup_by(|a, b| (*a - *b).abs() < 8.0);
            println!(
                "{:<20} {:<28} {} widgets in {} rows, {} problems",
                size.name,
                state,
                h.state().toolbar.items.len(),
                rows.len(),
                p.len()
            );
            if std::env::var_os("TOOLBAR_VERBOSE").is_some() {
                for i in &h.state().toolbar.items {
                    println!("    {} {:?}", i.id, i.rect);
                }
            }
            for x in p {
                failures.push(format!("{} / {state}: {x}", size.name));
            }
        };
        let base = GuiArgs {
            scenario: Some("locked-counter".into()),
            presenter: size.presenter,
            time_scale: Some(3.0),
            ..GuiArgs::default()
        };

        // Idle, then running, paused while running, finished, replaying.
        let mut h = harness(base.clone(), size);
        h.run_steps(3);
        check(&h, "idle");
        h.state_mut().command(Command::Run);
        assert!(wait_for(&mut h, |h| h.state().run.is_running()
            && h.state().rec.len() > 5));
        h.run_steps(2);
        check(&h, "running");
        h.state_mut().command(Command::TogglePlay);
        h.run_steps(3);
        check(&h, "paused while running");
        h.state_mut().command(Command::GoLive);
        assert!(
            wait_for(&mut h, |h| !h.state().run.is_running()),
            "the run ends"
        );
        h.run_steps(3);
        check(&h, "finished");
        let t0 = h.state().rec.t_range().map_or(0, |r| r.0);
        h.state_mut().command(Command::SetSpeed(0.001));
        h.state_mut().command(Command::ReplayFrom(t0));
        h.run_steps(3);
        check(&h, "replaying at 0.001x");
        h.state_mut().command(Command::Pause);
        h.state_mut().status = Some(
            "saved 12345 events to /home/lecturer/.local/share/forkscope/recordings/locked-counter-1764500000.jsonl (the oldest 99 were let go during the run)".into(),
        );
        h.state_mut().collector_problems = "3 lines that were not JSON".into();
        h.run_steps(3);
        check(&h, "paused, long messages");
        h.state_mut().command(Command::SetQuiz(true));
        h.run_steps(3);
        check(&h, "finished, quiz on");
        if size.presenter {
            h.state_mut().command(Command::ToggleSidePanels);
            h.run_steps(3);
            check(&h, "presenter with side panels");
        }
        drop(h);

        // Step mode, waiting for the user; then seeded (its seed field).
        let mut h = harness(
            GuiArgs {
                mode: Some(Mode::Step),
                ..base.clone()
            },
            size,
        );
        h.run_steps(3);
        check(&h, "step mode, idle");
        h.state_mut().command(Command::Run);
        assert!(wait_for(&mut h, |h| h
            .state()
            .gated
            .as_ref()
            .is_some_and(|g| g.awaiting_user)));
        h.run_steps(2);
        check(&h, "step mode, your turn");
        h.state_mut().command(Command::Stop);
        assert!(wait_for(&mut h, |h| !h.state().run.is_running()));
        h.state_mut().command(Command::SetMode(Mode::Seeded));
        h.run_steps(3);
        check(&h, "seeded, stopped");
        drop(h);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
