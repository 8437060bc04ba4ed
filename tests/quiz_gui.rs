//! Quiz mode in the app, driven as a user does: switch Quiz on, press Run,
//! the question is on the stage and nothing runs yet; answer (a number
//! typed in, or a choice clicked); the run goes; the answer card says right
//! or wrong, what decided it, points at that process, and is large enough
//! for a lecture hall (presenter mode at 1280×720: at least 18 px).
//!
//! Its own `main` (`harness = false`) as tests/gui.rs: sessions start
//! `current_exe() __runner`, which here is this binary. Tests run one after
//! another (each run forks real processes). `run_steps`, never `run()`: a
//! live run keeps repainting.

mod harness;

use harness::wait_for;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use forkscope::app::quiz::{self, Phase};
use forkscope::app::{App, GuiArgs, RunState, controls};
use std::process::ExitCode;

fn main() -> ExitCode {
    let tests: &[(&str, fn())] = &[
        (
            "a_typed_number_is_judged_right_and_points_at_its_process",
            a_typed_number_is_judged_right_and_points_at_its_process,
        ),
        (
            "a_wrong_choice_in_presenter_mode_is_large_and_on_screen",
            a_wrong_choice_in_presenter_mode_is_large_and_on_screen,
        ),
        (
            "cancel_runs_nothing_and_quiz_off_runs_at_once",
            cancel_runs_nothing_and_quiz_off_runs_at_once,
        ),
        (
            "every_builtin_answer_card_is_legible_on_a_720p_projector",
            every_builtin_answer_card_is_legible_on_a_720p_projector,
        ),
    ];
    harness::main(tests)
}

fn harness(args: GuiArgs, size: (f32, f32)) -> Harness<'static, App> {
    let app = App::new(&args).expect("the app starts");
    Harness::builder()
        .with_size(egui::vec2(size.0, size.1))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app)
}

fn has_label(h: &Harness<'static, App>, label: &str) -> bool {
    h.query_by_label(label).is_some()
}

fn has_label_containing(h: &Harness<'static, App>, part: &str) -> bool {
    h.query_by_label_contains(part).is_some()
}

fn answered(h: &Harness<'static, App>) -> bool {
    matches!(h.state().quiz.phase, Phase::Answered { .. })
}

/// fork-print asks for a number: type 2, lock it in; the run happens only
/// then; the card says right, and the process that printed the deciding
/// line is selected (highlighted on the stage).
fn a_typed_number_is_judged_right_and_points_at_its_process() {
    let mut h = harness(
        GuiArgs {
            scenario: Some("fork-print".into()),
            ..GuiArgs::default()
        },
        (1280.0, 800.0),
    );
    h.run_steps(3);
    h.get_by_label(quiz::QUIZ).click();
    h.run_steps(2);
    assert!(h.state().quiz.on, "the toggle switched quiz mode on");
    h.get_by_label(controls::RUN).click();
    h.run_steps(3);
    assert!(
        has_label(&h, "How many times does 1111111111 come out?"),
        "the question is on the stage"
    );
    assert!(
        matches!(h.state().run, RunState::Idle),
        "nothing runs before the answer"
    );
    assert!(h.state().rec.is_empty());
    // The number field has the keyboard: type and lock in.
    h.get_by_label(quiz::LOCK_IN).type_text("2");
    h.run_steps(2);
    h.get_by_label(quiz::LOCK_IN).click();
    assert!(wait_for(&mut h, answered), "the run ends and is answered");
    h.run_steps(3);
    assert!(
        !has_label(&h, "How many times does 1111111111 come out?") || has_label(&h, quiz::RIGHT),
        "the question made way for the answer"
    );
    assert!(has_label(&h, quiz::RIGHT), "2 lines: right");
    assert!(has_label(&h, "The answer: 2"));
    assert!(has_label(&h, "you said 2"));
    assert!(
        has_label_containing(&h, "Decided by: ") && has_label_containing(&h, "the 2nd line"),
        "names the deciding event"
    );
    let Phase::Answered { results, .. } = &h.state().quiz.phase else {
        panic!("answered");
    };
    let decider = results[0]
        .outcome
        .decider
        .clone()
        .expect("a deciding event");
    assert_eq!(
        h.state().selected.as_deref(),
        Some(decider.proc_id.as_str()),
        "the process that printed the deciding line is highlighted"
    );
    // "Show that moment" pauses the stage there.
    h.get_by_label(quiz::SHOW_MOMENT).click();
    h.run_steps(3);
    assert!(!h.state().time.follow, "paused");
    assert_eq!(h.state().time.cursor_t_ns, decider.t_ns);
    // Hide, and the card is gone.
    h.get_by_label(quiz::HIDE).click();
    h.run_steps(3);
    assert!(!has_label(&h, quiz::RIGHT));
}

/// Presenter mode at 1280×720: choose a wrong button; the verdict, the
/// answer and the deciding event are at least 18 px tall and on screen.
fn a_wrong_choice_in_presenter_mode_is_large_and_on_screen() {
    let mut h = harness(
        GuiArgs {
            scenario: Some("process-join".into()),
            presenter: true,
            quiz: true,
            set: vec!["work_ms=50".into()],
            ..GuiArgs::default()
        },
        (1280.0, 720.0),
    );
    h.run_steps(3);
    h.get_by_label(controls::RUN).click();
    h.run_steps(3);
    assert!(has_label(&h, "What does main print last?"));
    let ppp = h.ctx.pixels_per_point();
    let q = h.get_by_label("What does main print last?").rect();
    assert!(q.height() * ppp >= 18.0, "question {} px", q.height() * ppp);
    h.get_by_label("child start...").click();
    assert!(wait_for(&mut h, answered), "the run ends and is answered");
    h.run_steps(4);
    assert!(has_label(&h, quiz::WRONG));
    assert!(has_label(&h, "The answer: child end"));
    assert!(has_label(&h, "you said child start..."));
    let ppp = h.ctx.pixels_per_point();
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 720.0));
    for label in [
        quiz::WRONG,
        "The answer: child end",
        "you said child start...",
    ] {
        let r = h.get_by_label(label).rect();
        let px = egui::Rect::from_min_max(
            (r.min.to_vec2() * ppp).to_pos2(),
            (r.max.to_vec2() * ppp).to_pos2(),
        );
        assert!(px.height() >= 18.0, "{label}: {} px tall", px.height());
        assert!(window.contains_rect(px), "{label} on screen: {px:?}");
    }
    let decided = h
        .get_by_label_contains("Decided by: main prints \"child end\"")
        .rect();
    assert!(decided.height() * ppp >= 18.0);
    let card = h.state().quiz.last_card.expect("the card is drawn");
    let card_px = egui::Rect::from_min_max(
        (card.min.to_vec2() * ppp).to_pos2(),
        (card.max.to_vec2() * ppp).to_pos2(),
    );
    assert!(
        window.expand(0.5).contains_rect(card_px),
        "card on screen: {card_px:?}"
    );
    // The card does not hide the process it points at.
    let node = h
        .state()
        .stage
        .last_layout
        .as_ref()
        .and_then(|l| l.nodes.get("main"))
        .map(|n| n.rect)
        .expect("main is on the stage");
    assert!(!card.intersects(node), "card {card:?} over main {node:?}");
    assert_eq!(h.state().selected.as_deref(), Some("main"));
}

fn cancel_runs_nothing_and_quiz_off_runs_at_once() {
    let mut h = harness(
        GuiArgs {
            scenario: Some("shared-ctypes".into()),
            quiz: true,
            ..GuiArgs::default()
        },
        (1280.0, 800.0),
    );
    h.run_steps(3);
    h.get_by_label(controls::RUN).click();
    h.run_steps(3);
    assert!(h.state().quiz.asking());
    assert!(
        has_label(&h, "49") && has_label(&h, "7"),
        "the choices are buttons"
    );
    h.get_by_label(quiz::CANCEL).click();
    h.run_steps(3);
    assert!(!h.state().quiz.asking());
    assert!(
        matches!(h.state().run, RunState::Idle),
        "Cancel runs nothing"
    );
    // Keys: Escape cancels too; a digit picks that choice and runs.
    h.get_by_label(controls::RUN).click();
    h.run_steps(3);
    assert!(h.state().quiz.asking());
    h.key_press(egui::Key::Escape);
    h.run_steps(3);
    assert!(!h.state().quiz.asking(), "Escape cancels");
    h.get_by_label(controls::RUN).click();
    h.run_steps(3);
    h.key_press(egui::Key::Num2);
    assert!(wait_for(&mut h, answered), "key 2 picked 49 and ran");
    h.run_steps(3);
    assert!(has_label(&h, quiz::RIGHT), "49 is right");
    assert!(has_label(&h, "you said 49"));
    h.get_by_label(quiz::QUIZ).click();
    h.run_steps(2);
    assert!(!h.state().quiz.on);
    h.get_by_label(controls::RUN).click();
    h.run_steps(2);
    assert!(!h.state().quiz.asking(), "no question with quiz mode off");
    assert!(
        wait_for(&mut h, |h| matches!(
            h.state().run,
            RunState::Finished { .. }
        )),
        "the run went at once"
    );
    h.run_steps(3);
    assert!(!answered(&h), "no answer card without a question");
    // A scenario without questions: with quiz mode off, no toggle to
    // crowd the toolbar.
    h.get_by_label("Zombie: a child that has exited but is not yet reaped")
        .click_accesskit();
    h.run_steps(3);
    assert!(
        !has_label(&h, quiz::QUIZ),
        "no Quiz toggle where nothing is asked"
    );
}

/// Every built-in with a question, answered from the command line
/// (`--quiz-answer 1`) in presenter mode at 1280×720: the card is inside the
/// window, its verdict, answer and deciding event are at least 18 px tall,
/// and it does not cover what it points at.
fn every_builtin_answer_card_is_legible_on_a_720p_projector() {
    let mut checked = Vec::new();
    for b in forkscope::scenario::catalog::BUILTINS {
        let s = b.load().expect("built-ins load");
        if s.quiz.is_empty() {
            continue;
        }
        let answers = vec!["1"; s.quiz.len()].join(";");
        let mut h = harness(
            GuiArgs {
                scenario: Some(b.name.into()),
                presenter: true,
                quiz_answer: Some(answers),
                time_scale: Some(0.1),
                ..GuiArgs::default()
            },
            (1280.0, 720.0),
        );
        assert!(wait_for(&mut h, answered), "{}: answered", b.name);
        h.run_steps(4);
        let ppp = h.ctx.pixels_per_point();
        let px = |r: egui::Rect| {
            egui::Rect::from_min_max(
                (r.min.to_vec2() * ppp).to_pos2(),
                (r.max.to_vec2() * ppp).to_pos2(),
            )
        };
        let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 720.0));
        let card = h.state().quiz.last_card.expect("the card is drawn");
        assert!(
            window.expand(0.5).contains_rect(px(card)),
            "{}: card {:?} off screen",
            b.name,
            px(card)
        );
        let Phase::Answered { results, .. } = &h.state().quiz.phase else {
            panic!("{}: answered", b.name);
        };
        let judged = results[0].clone();
        let verdict = if judged.right == Some(true) {
            quiz::RIGHT
        } else {
            quiz::WRONG
        };
        let answer = format!(
            "The answer: {}",
            judged.outcome.answer.as_ref().expect("an answer")
        );
        for label in [verdict, answer.as_str()] {
            let r = px(h.get_by_label(label).rect());
            assert!(r.height() >= 18.0, "{}: {label}: {} px", b.name, r.height());
            assert!(window.contains_rect(r), "{}: {label} off screen", b.name);
        }
        let decided = px(h.get_by_label_contains("Decided by: ").rect());
        assert!(decided.height() >= 18.0, "{}", b.name);
        assert!(
            window.contains_rect(decided),
            "{}: Decided by off screen",
            b.name
        );
        let decider = judged.outcome.decider.expect("a deciding event");
        let layout = h.state().stage.last_layout.as_ref().expect("a stage");
        let target = match &decider.target {
            forkscope::scenario::quiz::Target::Process(id) => layout.nodes.get(id).map(|n| n.rect),
            forkscope::scenario::quiz::Target::Value(v) => layout.values.get(v).map(|c| c.rect),
            forkscope::scenario::quiz::Target::Channel(c) => layout.channels.get(c).map(|c| c.rect),
            forkscope::scenario::quiz::Target::Run => None,
        };
        if let Some(t) = target {
            let hidden = card.intersect(t);
            let share = if hidden.is_positive() {
                hidden.area() / t.area()
            } else {
                0.0
            };
            assert!(
                share < 0.25,
                "{}: the card covers {:.0} % of what it points at",
                b.name,
                share * 100.0
            );
        }
        checked.push(b.name);
    }
    assert!(checked.len() >= 10, "{checked:?}");
}
