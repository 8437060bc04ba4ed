//! Quiz mode: predict, then run. With the toggle on, Run first asks the
//! scenario's questions (`[[quiz]]`) on the stage: choices as buttons, or
//! a number field. Then the run goes; when it ends, the real answer is
//! shown on the stage, large enough for a lecture hall, right or wrong,
//! with an arrow to what decided it (the process, the shared value or the
//! queue) and a button that shows that moment.
//!
//! The state is this module's own ([`QuizState`]); the app calls
//! [`QuizState::intercept_run`] on Run, [`QuizState::started`] after a
//! start, and [`QuizState::update`] every frame.

use super::layout::StageLayout;
use super::recording::Recording;
use super::stage::StageView;
use super::theme::{self, Theme};
use super::{Command, Picked, RunState};
use crate::scenario::quiz::{Answer, Guess, Outcome, Question, Target};
use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Stroke, Ui};

/// The toggle in the toolbar.
pub const QUIZ: &str = "Quiz";
/// Lock a number in and run.
pub const LOCK_IN: &str = "Lock in and run";
pub const SKIP: &str = "Skip the question";
pub const CANCEL: &str = "Cancel";
pub const HIDE: &str = "Hide answer";
pub const SHOW_MOMENT: &str = "Show that moment";
pub const RIGHT: &str = "✔ Right!";
pub const WRONG: &str = "✖ Not this time";
pub const NO_GUESS: &str = "The answer";

/// Keys 1 to 6 pick the choices.
const DIGITS: [egui::Key; 6] = [
    egui::Key::Num1,
    egui::Key::Num2,
    egui::Key::Num3,
    egui::Key::Num4,
    egui::Key::Num5,
    egui::Key::Num6,
];

/// Sizes in points (presenter mode zooms them by 1.6: the smallest, 12,
/// is 19 px on a 1280×720 projector).
const QUESTION_PT: f32 = 22.0;
const CHOICE_PT: f32 = 20.0;
const VERDICT_PT: f32 = 24.0;
const ANSWER_PT: f32 = 20.0;
const BODY_PT: f32 = 14.0;
const SMALL_PT: f32 = 12.0;

/// One question's result.
#[derive(Clone, Debug)]
pub struct Judged {
    pub question: Question,
    pub guess: Option<Guess>,
    pub outcome: Outcome,
    /// None: no guess, or the run gave no answer.
    pub right: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub enum Phase {
    #[default]
    Idle,
    /// Asking question `index` of the picked scenario.
    Asking {
        scenario: String,
        index: usize,
        guesses: Vec<Option<Guess>>,
    },
    /// Every question answered: the next Run starts the run.
    Ready {
        scenario: String,
        guesses: Vec<Option<Guess>>,
    },
    /// The run goes; the answers come when it ends.
    Running {
        scenario: String,
        guesses: Vec<Option<Guess>>,
    },
    /// The answers of the last run.
    Answered {
        scenario: String,
        results: Vec<Judged>,
        /// Was the run stopped before its end?
        stopped: bool,
        /// Were the oldest events let go (memory budget) before the end?
        partial: bool,
        hidden: bool,
    },
}

#[derive(Default)]
pub struct QuizState {
    pub on: bool,
    pub phase: Phase,
    /// The number field.
    pub typed: String,
    /// What was wrong with the last thing typed.
    pub problem: Option<String>,
    /// The answer card's size in the last frame (to place it).
    card_size: Option<egui::Vec2>,
    /// Where the answer card was last drawn (tests, layout checks).
    pub last_card: Option<Rect>,
    /// The rings drawn round what decided each answer (for the dump).
    pub last_rings: Vec<Rect>,
    /// The number field takes the keyboard when its question comes.
    want_focus: bool,
}

fn questions(picked: Option<&Picked>) -> Option<(&str, &[Question])> {
    let s = &picked?.loaded.scenario;
    (!s.quiz.is_empty()).then_some((s.name.as_str(), s.quiz.as_slice()))
}

impl QuizState {
    /// Quiz mode on or off, nothing asked yet.
    pub fn new(on: bool) -> QuizState {
        QuizState {
            on,
            ..QuizState::default()
        }
    }

    /// Run was pressed: true if the quiz asks first (the run waits).
    pub fn intercept_run(&mut self, picked: Option<&Picked>) -> bool {
        if !self.on {
            return false;
        }
        let Some((name, qs)) = questions(picked) else {
            return false;
        };
        if matches!(&self.phase, Phase::Ready { scenario, .. } if scenario == name) {
            return false;
        }
        self.typed.clear();
        self.problem = None;
        self.want_focus = true;
        self.phase = Phase::Asking {
            scenario: name.to_string(),
            index: 0,
            guesses: vec![None; qs.len()],
        };
        true
    }

    /// A run was started (or not).
    pub fn started(&mut self, running: bool) {
        self.phase = match std::mem::take(&mut self.phase) {
            Phase::Ready { scenario, guesses } if running => Phase::Running { scenario, guesses },
            // A run without questions clears the last answers.
            _ => Phase::Idle,
        };
    }

    /// Every frame: when the run the quiz waits for has ended, its
    /// answers; a command to point at what decided the first one.
    pub fn update(
        &mut self,
        picked: Option<&Picked>,
        run: &RunState,
        rec: &Recording,
    ) -> Option<Command> {
        let name = picked.map(|p| p.loaded.scenario.name.as_str());
        let current = match &self.phase {
            Phase::Idle => return None,
            Phase::Asking { scenario, .. }
            | Phase::Ready { scenario, .. }
            | Phase::Running { scenario, .. }
            | Phase::Answered { scenario, .. } => scenario.as_str(),
        };
        // Another scenario was picked, or the quiz was switched off
        // while asking: forget.
        if Some(current) != name
            || (!self.on && matches!(self.phase, Phase::Asking { .. } | Phase::Ready { .. }))
        {
            self.phase = Phase::Idle;
            return None;
        }
        // A run started some other way (Restart, R): the question or the
        // last answers are not about it.
        if run.is_running() && matches!(self.phase, Phase::Asking { .. } | Phase::Answered { .. }) {
            self.phase = Phase::Idle;
            return None;
        }
        let Phase::Running { guesses, .. } = &self.phase else {
            return None;
        };
        let stopped = match run {
            RunState::Running { .. } => return None,
            RunState::Finished { stopped, .. } => *stopped,
            RunState::Idle => true,
        };
        let (_, qs) = questions(picked)?;
        let events = rec.log.kept();
        let results: Vec<Judged> = qs
            .iter()
            .zip(guesses.iter())
            .map(|(q, g)| {
                let outcome = q.evaluate(events);
                let right = match (g, &outcome.answer) {
                    (Some(g), Some(a)) => Some(q.is_right(g, a)),
                    _ => None,
                };
                Judged {
                    question: q.clone(),
                    guess: g.clone(),
                    outcome,
                    right,
                }
            })
            .collect();
        let point = results.first().and_then(|j| match &j.outcome.decider {
            Some(d) => match &d.target {
                Target::Process(id) => Some(Command::SelectProcess(Some(id.clone()))),
                _ => None,
            },
            None => None,
        });
        self.phase = Phase::Answered {
            scenario: current.to_string(),
            results,
            stopped,
            partial: rec.log.first_kept() > 0,
            hidden: false,
        };
        point
    }

    /// Is a question on the stage now?
    pub fn asking(&self) -> bool {
        matches!(self.phase, Phase::Asking { .. })
    }

    /// The results shown on the stage, if any.
    pub fn results(&self) -> Option<&[Judged]> {
        match &self.phase {
            Phase::Answered {
                results,
                hidden: false,
                ..
            } => Some(results),
            _ => None,
        }
    }

    /// Takes a guess for the question asked; after the last, the run.
    fn answer(&mut self, guess: Option<Guess>, n_questions: usize, cmds: &mut Vec<Command>) {
        let Phase::Asking {
            scenario,
            index,
            guesses,
        } = &mut self.phase
        else {
            return;
        };
        if let Some(slot) = guesses.get_mut(*index) {
            *slot = guess;
        }
        self.typed.clear();
        self.problem = None;
        if *index + 1 < n_questions {
            *index += 1;
            self.want_focus = true;
            return;
        }
        self.phase = Phase::Ready {
            scenario: std::mem::take(scenario),
            guesses: std::mem::take(guesses),
        };
        cmds.push(Command::Run);
    }
}

/// The toggle, for the toolbar (its response, when it is there).
pub fn toggle(
    ui: &mut Ui,
    c: &super::ChromeCtx,
    big: bool,
    cmds: &mut Vec<Command>,
) -> Option<egui::Response> {
    let has = questions(c.picked).is_some();
    // The toolbar is crowded: the toggle is there where it can ask
    // something (or while it is on).
    if !has && !c.quiz_on {
        return None;
    }
    let mut on = c.quiz_on;
    let text = if big {
        RichText::new(QUIZ).strong()
    } else {
        RichText::new(QUIZ)
    };
    let hover = if has {
        "Quiz mode: Run first asks the scenario's question, then shows the real answer"
    } else {
        "Quiz mode: this scenario asks no question (those with [[quiz]] do); click to switch it off"
    };
    let r = ui.checkbox(&mut on, text).on_hover_text(hover);
    if r.changed() {
        cmds.push(Command::SetQuiz(on));
    }
    Some(r)
}

/// The question before the run, or the answers after it, over the stage.
pub fn ui(
    ui: &mut Ui,
    quiz: &mut QuizState,
    picked: Option<&Picked>,
    theme: &Theme,
    stage: &StageView,
    t0_ns: Option<u64>,
    cmds: &mut Vec<Command>,
) {
    let Some(rect) = stage.last_rect else {
        return;
    };
    if quiz.asking() {
        ask(ui, quiz, picked, theme, rect, cmds);
    } else if quiz.results().is_some() {
        let layout = stage.last_layout.as_ref();
        answers(ui, quiz, theme, rect, layout, t0_ns, cmds);
    }
}

fn card_frame(theme: &Theme, accent: Color32) -> egui::Frame {
    egui::Frame::new()
        .fill(theme.panel)
        .stroke(Stroke::new(3.0, accent))
        .corner_radius(10.0)
        .inner_margin(egui::Margin::symmetric(14, 8))
        .shadow(egui::epaint::Shadow {
            offset: [0, 4],
            blur: 16,
            spread: 0,
            color: Color32::from_black_alpha(60),
        })
}

fn ask(
    ui: &mut Ui,
    quiz: &mut QuizState,
    picked: Option<&Picked>,
    theme: &Theme,
    stage: Rect,
    cmds: &mut Vec<Command>,
) {
    let Some((_, qs)) = questions(picked) else {
        quiz.phase = Phase::Idle;
        return;
    };
    let Phase::Asking { index, .. } = &quiz.phase else {
        return;
    };
    let index = *index;
    let Some(q) = qs.get(index).cloned() else {
        quiz.phase = Phase::Idle;
        return;
    };
    let n = qs.len();
    let width = (stage.width() * 0.8).clamp(200.0, 760.0);
    egui::Area::new(egui::Id::unique("forkscope_quiz_ask"))
        .order(egui::Order::Foreground)
        .pivot(Align2::CENTER_CENTER)
        .fixed_pos(stage.center())
        .show(ui.ctx(), |ui| {
            card_frame(theme, theme::okabe_ito::BLUE).show(ui, |ui| {
                ui.set_width(width);
                let head = if n > 1 {
                    format!("Predict, then run: question {} of {n}", index + 1)
                } else {
                    "Predict, then run".to_string()
                };
                ui.label(RichText::new(head).size(SMALL_PT).color(theme.weak_text));
                ui.add(
                    egui::Label::new(
                        RichText::new(&q.ask)
                            .size(QUESTION_PT)
                            .strong()
                            .color(theme.text),
                    )
                    .wrap(),
                );
                if q.varies {
                    ui.label(
                        RichText::new("(a race: the answer varies from run to run)")
                            .size(SMALL_PT)
                            .color(theme.weak_text),
                    );
                }
                ui.add_space(10.0);
                let mut guess: Option<Option<Guess>> = None;
                if q.choices.is_empty() {
                    ui.horizontal(|ui| {
                        let field = egui::TextEdit::singleline(&mut quiz.typed)
                            .hint_text("a number")
                            .font(FontId::proportional(CHOICE_PT))
                            .desired_width(160.0);
                        let r = ui.add(field);
                        if quiz.want_focus {
                            r.request_focus();
                            quiz.want_focus = false;
                        }
                        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                        let lock = ui
                            .add(egui::Button::new(RichText::new(LOCK_IN).size(CHOICE_PT)))
                            .clicked();
                        if enter || lock {
                            match q.parse_guess(&quiz.typed) {
                                Ok(g) => guess = Some(Some(g)),
                                Err(e) => quiz.problem = Some(e),
                            }
                        }
                    });
                    if let Some(p) = &quiz.problem {
                        ui.label(
                            RichText::new(p)
                                .size(BODY_PT)
                                .color(theme.ink(theme::ALARM)),
                        );
                    }
                } else {
                    ui.horizontal_wrapped(|ui| {
                        ui.spacing_mut().item_spacing = egui::vec2(12.0, 10.0);
                        for (i, c) in q.choices.iter().enumerate() {
                            let b = egui::Button::new(RichText::new(c).size(CHOICE_PT))
                                .min_size(egui::vec2(90.0, 40.0));
                            let key = DIGITS.get(i).copied();
                            let pressed = key.is_some_and(|k| ui.input(|inp| inp.key_pressed(k)));
                            let hover = format!("or press {}", i + 1);
                            if ui.add(b).on_hover_text(hover).clicked() || pressed {
                                guess = Some(Some(Guess::Choice(i)));
                            }
                        }
                    });
                }
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    if ui
                        .button(RichText::new(SKIP).size(SMALL_PT))
                        .on_hover_text("Run without answering; the answer is still shown")
                        .clicked()
                    {
                        guess = Some(None);
                    }
                    let escape = ui.input(|i| i.key_pressed(egui::Key::Escape));
                    if ui.button(RichText::new(CANCEL).size(SMALL_PT)).clicked() || escape {
                        quiz.phase = Phase::Idle;
                    }
                });
                if let Some(g) = guess {
                    quiz.answer(g, n, cmds);
                }
            });
        });
}

fn target_rect(layout: &StageLayout, target: &Target) -> Option<Rect> {
    match target {
        Target::Process(id) => layout.nodes.get(id).map(|n| n.rect),
        Target::Value(name) => layout.values.get(name).map(|c| c.rect),
        Target::Channel(name) => layout.channels.get(name).map(|c| c.rect),
        Target::Run => layout.banner.as_ref().map(|b| b.0),
    }
}

fn answers(
    ui: &mut Ui,
    quiz: &mut QuizState,
    theme: &Theme,
    stage: Rect,
    layout: Option<&StageLayout>,
    t0_ns: Option<u64>,
    cmds: &mut Vec<Command>,
) {
    let Phase::Answered {
        results,
        stopped,
        partial,
        ..
    } = &quiz.phase
    else {
        return;
    };
    let note = if *stopped {
        Some("(the run was stopped before its end)")
    } else if *partial {
        Some("(the oldest events were let go to save memory: answers from the events kept)")
    } else {
        None
    };
    let results = results.clone();
    let targets: Vec<Rect> = results
        .iter()
        .filter_map(|j| j.outcome.decider.as_ref())
        .filter_map(|d| layout.and_then(|l| target_rect(l, &d.target)))
        .collect();
    // Wide and low: a band across the stage hides less than a tall box.
    // (The frame adds its margins and stroke: 2 × 14 + 2 × 3.)
    let width = (stage.width() - 16.0 - 34.0).clamp(200.0, 1100.0);
    let size = quiz
        .card_size
        .unwrap_or(egui::vec2(width, 170.0))
        .min(stage.size() - egui::vec2(16.0, 16.0));
    let (pivot, pos) = place_card(stage, size, &targets, layout);
    let all_right = results.iter().all(|j| j.right == Some(true));
    let any_guess = results.iter().any(|j| j.right.is_some());
    let accent = if !any_guess {
        theme::okabe_ito::BLUE
    } else if all_right {
        theme::okabe_ito::BLUISH_GREEN
    } else {
        theme::okabe_ito::VERMILLION
    };
    let mut hide = false;
    let area = egui::Area::new(egui::Id::unique("forkscope_quiz_answer"))
        .order(egui::Order::Foreground)
        .pivot(pivot)
        .fixed_pos(pos)
        .show(ui.ctx(), |ui| {
            card_frame(theme, accent).show(ui, |ui| {
                ui.set_width(width);
                for (i, j) in results.iter().enumerate() {
                    let first = (i == 0).then_some(&mut hide);
                    judged(ui, j, theme, t0_ns, note, first, cmds);
                }
            });
        });
    let card = area.response.rect;
    quiz.card_size = Some(card.size());
    quiz.last_card = Some(card);
    quiz.last_rings.clear();
    if hide {
        if let Phase::Answered { hidden, .. } = &mut quiz.phase {
            *hidden = true;
        }
        quiz.last_card = None;
        return;
    }
    // Arrows from the card to what decided each answer, and a ring round it.
    let painter = ui.ctx().layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("forkscope_quiz_pointer"),
    ));
    let ink = theme.ink(accent);
    for r in targets {
        let ring = r.expand(6.0);
        quiz.last_rings.push(ring.expand(4.0));
        painter.rect_stroke(ring, 8.0, Stroke::new(4.0, ink), egui::StrokeKind::Outside);
        if !card.intersects(ring) {
            let (from, to) = nearest_sides(card, ring);
            painter.arrow(from, to - from, Stroke::new(4.0, ink));
        }
    }
}

/// One question's result: the question (and, on the first, Hide), the
/// verdict with the answer, the deciding event, why.
fn judged(
    ui: &mut Ui,
    j: &Judged,
    theme: &Theme,
    t0_ns: Option<u64>,
    note: Option<&str>,
    hide: Option<&mut bool>,
    cmds: &mut Vec<Command>,
) {
    let q = &j.question;
    let (verdict, color) = match j.right {
        Some(true) => (RIGHT, theme::okabe_ito::BLUISH_GREEN),
        Some(false) => (WRONG, theme::okabe_ito::VERMILLION),
        None => (NO_GUESS, theme.text),
    };
    let first = hide.is_some();
    ui.horizontal_wrapped(|ui| {
        if let Some(hide) = hide
            && ui.button(RichText::new(HIDE).size(SMALL_PT)).clicked()
        {
            *hide = true;
        }
        ui.label(RichText::new(&q.ask).size(SMALL_PT).color(theme.weak_text));
        if let Some(note) = note.filter(|_| first) {
            ui.label(RichText::new(note).size(SMALL_PT).color(theme.weak_text));
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(verdict)
                .size(VERDICT_PT)
                .strong()
                .color(theme.ink(color)),
        );
        ui.add_space(12.0);
        let answer = match &j.outcome.answer {
            Some(a) => format!("The answer: {}", shown(a)),
            None => format!(
                "No answer this run ({})",
                j.outcome.note.as_deref().unwrap_or("the run did not say")
            ),
        };
        ui.label(
            RichText::new(answer)
                .size(ANSWER_PT)
                .strong()
                .color(theme.text),
        );
        if let Some(g) = &j.guess {
            ui.add_space(12.0);
            ui.label(
                RichText::new(format!("you said {}", q.guess_text(g)))
                    .size(BODY_PT)
                    .color(theme.text),
            );
        }
    });
    if q.varies {
        ui.label(
            RichText::new("a race: this is this run's answer; it varies from run to run")
                .size(SMALL_PT)
                .color(theme.weak_text),
        );
    }
    if let Some(d) = &j.outcome.decider {
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!("Decided by: {d}"))
                    .size(BODY_PT)
                    .color(theme.text),
            );
            if t0_ns.is_some()
                && ui
                    .button(RichText::new(SHOW_MOMENT).size(SMALL_PT))
                    .on_hover_text("Pause the stage at the event that decided the answer")
                    .clicked()
            {
                cmds.push(Command::Seek(d.t_ns));
                if let Target::Process(id) = &d.target {
                    cmds.push(Command::SelectProcess(Some(id.clone())));
                }
            }
        });
    }
    if !q.explain.is_empty() {
        ui.add(egui::Label::new(RichText::new(&q.explain).size(SMALL_PT).color(theme.text)).wrap());
    }
    ui.add_space(2.0);
}

/// An answer as the card shows it (text answers quoted when they are lines).
fn shown(a: &Answer) -> String {
    a.to_string()
}

impl QuizState {
    /// `--quiz-answer`: the questions answered from the command line
    /// (`;` between answers); the next Run starts at once.
    pub fn preset(&mut self, picked: Option<&Picked>, answers: &str) -> Result<(), String> {
        let Some((name, qs)) = questions(picked) else {
            return Err("--quiz-answer: this scenario asks no questions".into());
        };
        let typed: Vec<&str> = answers.split(';').collect();
        if typed.len() != qs.len() {
            return Err(format!(
                "--quiz-answer: {name} asks {} question(s), got {} answer(s)",
                qs.len(),
                typed.len()
            ));
        }
        let guesses = qs
            .iter()
            .zip(typed)
            .map(|(q, t)| {
                q.parse_guess(t)
                    .map(Some)
                    .map_err(|e| format!("--quiz-answer: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.on = true;
        self.phase = Phase::Ready {
            scenario: name.to_string(),
            guesses,
        };
        Ok(())
    }
}

/// Where the answer card goes: a corner or an edge of the stage where it
/// covers none of what it points at and as little of the rest as it can.
fn place_card(
    stage: Rect,
    size: egui::Vec2,
    targets: &[Rect],
    layout: Option<&StageLayout>,
) -> (Align2, Pos2) {
    let m = 8.0;
    let inner = stage.shrink(m);
    let candidates = [Align2::CENTER_BOTTOM, Align2::CENTER_TOP];
    let others: Vec<Rect> = layout
        .map(|l| {
            l.nodes
                .values()
                .map(|n| n.rect)
                .chain(l.values.values().map(|c| c.rect))
                .chain(l.locks.values().map(|c| c.rect))
                .chain(l.channels.values().map(|c| c.rect))
                .collect()
        })
        .unwrap_or_default();
    let overlap = |a: Rect, b: Rect| {
        let i = a.intersect(b);
        if i.is_positive() { i.area() } else { 0.0 }
    };
    let mut best = (f32::INFINITY, candidates[0]);
    for (rank, c) in candidates.iter().enumerate() {
        let card = c.anchor_size(c.pos_in_rect(&inner), size);
        let hides_target: f32 = targets.iter().map(|t| overlap(card, t.expand(8.0))).sum();
        let hides_rest: f32 = others.iter().map(|r| overlap(card, *r)).sum();
        // Hiding the answer's event is worst; then hiding anything; then
        // the order above (bottom centre first) breaks ties.
        let cost = hides_target * 100.0 + hides_rest + rank as f32;
        if cost < best.0 {
            best = (cost, *c);
        }
    }
    let c = best.1;
    (c, c.pos_in_rect(&inner))
}

/// The closest points of two rectangles' sides facing each other, for an
/// arrow from `a` to `b`.
fn nearest_sides(a: Rect, b: Rect) -> (Pos2, Pos2) {
    let from = Pos2::new(
        b.center().x.clamp(a.left() + 16.0, a.right() - 16.0),
        b.center().y.clamp(a.top() + 16.0, a.bottom() - 16.0),
    );
    let to = Pos2::new(
        from.x.clamp(b.left(), b.right()),
        from.y.clamp(b.top(), b.bottom()),
    );
    // Leave from the card's edge, not its inside.
    let from = if to.y < a.top() {
        Pos2::new(from.x, a.top())
    } else if to.y > a.bottom() {
        Pos2::new(from.x, a.bottom())
    } else if to.x < a.left() {
        Pos2::new(a.left(), from.y)
    } else {
        Pos2::new(a.right(), from.y)
    };
    (from, to)
}
