//! "Many runs": the picked scenario (or Python program, traced as `forkscope
//! stats` runs it) N times on a background thread (real runs, one after
//! another), and how they ended (final shared values, deadlock) as a bar
//! chart. For scenarios with a `lock` switch (the
//! counters) the same runs go once without and once with the lock, side
//! by side.
//!
//! The thread starts every session itself, all on one runner it starts
//! once, and keeps each until it ends (dropping a session stops its run).

use super::theme::okabe_ito;
use crate::lab::outcome::Outcome;
use crate::lab::{self, Scheduler, Then, final_values};
use crate::protocol::Value;
use crate::scenario::limits::Limits;
use crate::session::{RunOptions, RunnerHost, Session};
use egui::{RichText, Ui};
use egui_plot::{Bar, BarChart, Corner, GridMark, Legend, Plot, Text};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub const START: &str = "▶ Start the runs";
pub const CANCEL: &str = "■ Cancel";
/// Longest a single run may take here before it is stopped and counted
/// as timed out.
const RUN_TIMEOUT_S: f64 = 20.0;
pub const MAX_RUNS: u32 = 1000;

/// One set of runs with the same parameters.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub label: String,
    /// `Some(on)` when this series sets the `lock` parameter.
    pub lock: Option<bool>,
    pub counts: BTreeMap<Outcome, u64>,
    /// Runs stopped by the time limit (not counted as an outcome).
    pub timed_out: u64,
    pub done: u32,
}

/// What the runs found so far.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub scenario: String,
    /// How the runs were scheduled, in words.
    pub how: String,
    pub series: Vec<Series>,
    pub runs_each: u32,
    pub finished: bool,
    pub cancelled: bool,
    pub error: Option<String>,
}

impl Tally {
    pub fn done(&self) -> u32 {
        self.series.iter().map(|s| s.done).sum()
    }

    pub fn total(&self) -> u32 {
        self.runs_each * self.series.len() as u32
    }

    /// Every outcome any series saw, in a readable order (numbers by
    /// value, deadlocks last).
    pub fn outcomes(&self) -> Vec<Outcome> {
        let mut all: Vec<Outcome> = self
            .series
            .iter()
            .flat_map(|s| s.counts.keys().cloned())
            .collect();
        all.sort_by(compare_outcomes);
        all.dedup();
        all
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario_name: String,
    pub text: String,
    pub origin: String,
    pub params: BTreeMap<String, Value>,
    pub time_scale: f64,
    pub runs: u32,
    pub seeded: bool,
    pub first_seed: u64,
    /// Run lock = false and lock = true side by side.
    pub both_locks: bool,
    pub max_procs: u32,
    /// A Python program, run traced (as `forkscope stats PROG.py` does);
    /// its outcome is the final value of each shared value it made.
    pub python: Option<crate::trace::PythonProgram>,
}

struct Job {
    shared: Arc<Mutex<Tally>>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The view's settings and the current (or last) set of runs.
pub struct ManyRuns {
    pub runs: u32,
    pub seeded: bool,
    pub first_seed: u64,
    pub tally: Option<Tally>,
    job: Option<Job>,
}

impl Default for ManyRuns {
    fn default() -> Self {
        ManyRuns {
            runs: 20,
            seeded: true,
            first_seed: 1,
            tally: None,
            job: None,
        }
    }
}

impl Drop for ManyRuns {
    fn drop(&mut self) {
        // The thread stops after its current run; not waited for, so
        // closing the window never hangs on it.
        if let Some(job) = &self.job {
            job.cancel.store(true, Ordering::SeqCst);
        }
    }
}

impl ManyRuns {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Starts the runs on a background thread; `repaint` is asked for
    /// after each run.
    pub fn start(&mut self, plan: Plan, repaint: egui::Context) {
        if self.job.is_some() {
            return;
        }
        let locks: Vec<Option<bool>> = if plan.both_locks {
            vec![Some(false), Some(true)]
        } else {
            vec![None]
        };
        let how = if plan.seeded {
            format!(
                "seeded schedules, seeds {}…{}",
                plan.first_seed,
                plan.first_seed
                    .wrapping_add(u64::from(plan.runs.saturating_sub(1)))
            )
        } else {
            "scheduled by the operating system".into()
        };
        let tally = Tally {
            scenario: plan.scenario_name.clone(),
            how,
            series: locks
                .iter()
                .map(|lock| Series {
                    label: match lock {
                        Some(false) => "without lock (lock = false)".into(),
                        Some(true) => "with lock (lock = true)".into(),
                        None => "runs".into(),
                    },
                    lock: *lock,
                    ..Series::default()
                })
                .collect(),
            runs_each: plan.runs,
            ..Tally::default()
        };
        let shared = Arc::new(Mutex::new(tally.clone()));
        self.tally = Some(tally);
        let cancel = Arc::new(AtomicBool::new(false));
        let (s, c) = (shared.clone(), cancel.clone());
        let thread = std::thread::Builder::new()
            .name("many-runs".into())
            .spawn(move || run_all(&plan, &s, &c, &repaint));
        match thread {
            Ok(t) => {
                self.job = Some(Job {
                    shared,
                    cancel,
                    thread: Some(t),
                })
            }
            Err(e) => {
                if let Some(t) = self.tally.as_mut() {
                    t.error = Some(format!("cannot start a thread for the runs: {e}"));
                    t.finished = true;
                }
            }
        }
    }

    pub fn cancel(&mut self) {
        if let Some(job) = &self.job {
            job.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Takes in what the thread found; once it is done, lets it go.
    pub fn poll(&mut self) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let tally = job.shared.lock().map(|t| t.clone()).ok();
        let finished = tally.as_ref().is_none_or(|t| t.finished);
        if let Some(t) = tally {
            self.tally = Some(t);
        }
        if finished {
            if let Some(t) = job.thread.take() {
                // It has finished its last run: this returns at once.
                let _ = t.join();
            }
            self.job = None;
        }
    }
}

fn run_all(plan: &Plan, shared: &Mutex<Tally>, cancel: &AtomicBool, repaint: &egui::Context) {
    let series: Vec<Option<bool>> = shared
        .lock()
        .map(|t| t.series.iter().map(|s| s.lock).collect())
        .unwrap_or_default();
    let update = |f: &mut dyn FnMut(&mut Tally)| {
        if let Ok(mut t) = shared.lock() {
            f(&mut t);
        }
        repaint.request_repaint();
    };
    // One runner for all the runs; it exits when this thread lets go.
    let host = match RunnerHost::start() {
        Ok(h) => h,
        Err(e) => {
            update(&mut |t| {
                t.error = Some(format!("cannot start the runner: {e:#}"));
                t.finished = true;
            });
            return;
        }
    };
    'runs: for i in 0..plan.runs {
        // Lock off and on take turns, so both bars grow together.
        for (k, lock) in series.iter().enumerate() {
            if cancel.load(Ordering::SeqCst) {
                update(&mut |t| t.cancelled = true);
                break 'runs;
            }
            let mut params = plan.params.clone();
            if let Some(on) = lock {
                params.insert("lock".into(), Value::Bool(*on));
            }
            let seed = plan.first_seed.wrapping_add(u64::from(i));
            let opts = RunOptions {
                time_scale: plan.time_scale,
                seed,
                limits: Limits {
                    timeout_s: RUN_TIMEOUT_S,
                    max_procs: plan.max_procs,
                },
                gated: plan.seeded,
                stdout: None,
                python: plan.python.clone(),
            };
            let mut session =
                match Session::start_on(&host, &plan.text, &plan.origin, params, &opts) {
                    Ok(s) => s,
                    Err(e) => {
                        update(&mut |t| t.error = Some(format!("cannot start a run: {e:#}")));
                        break 'runs;
                    }
                };
            let outcome = if plan.seeded {
                let mut sched = Scheduler::new(Vec::new(), Then::Seeded(seed), true);
                let d = lab::run_gated(&mut session, &mut sched, RUN_TIMEOUT_S, || {
                    cancel.load(Ordering::SeqCst)
                });
                (!d.timed_out && !d.interrupted)
                    .then(|| Outcome::new(&final_values(&d.world), d.deadlock.is_some()))
            } else {
                Some(lab::run_free(&mut session, RUN_TIMEOUT_S, || {
                    cancel.load(Ordering::SeqCst)
                }))
            };
            // The run's processes end here, on this thread.
            drop(session);
            update(&mut |t| {
                if let Some(s) = t.series.get_mut(k) {
                    s.done += 1;
                    match &outcome {
                        Some(o) => *s.counts.entry(o.clone()).or_default() += 1,
                        None => s.timed_out += 1,
                    }
                }
            });
        }
    }
    update(&mut |t| t.finished = true);
}

/// Numbers by value (so 10 comes after 9), deadlocks last.
fn compare_outcomes(a: &Outcome, b: &Outcome) -> std::cmp::Ordering {
    a.deadlock.cmp(&b.deadlock).then_with(|| {
        for ((ka, va), (kb, vb)) in a.outcome.iter().zip(&b.outcome) {
            let by = ka
                .cmp(kb)
                .then_with(|| match (va.parse::<f64>(), vb.parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.total_cmp(&y),
                    _ => va.cmp(vb),
                });
            if by.is_ne() {
                return by;
            }
        }
        a.outcome.len().cmp(&b.outcome.len())
    })
}

/// An outcome in a few words: `counter = 2`, `DEADLOCK`, `ended normally`.
pub fn outcome_label(o: &Outcome) -> String {
    if o.outcome.is_empty() && !o.deadlock {
        "ended normally".into()
    } else {
        o.text()
    }
}

/// The bar colours: orange and blue stay apart for every common kind of
/// colour blindness (and each bar also has its number and a legend).
fn series_color(k: usize, presenter: bool) -> egui::Color32 {
    match (k, presenter) {
        (0, false) => okabe_ito::ORANGE,
        (0, true) => egui::Color32::from_rgb(0xC7, 0x7C, 0x00),
        _ => okabe_ito::BLUE,
    }
}

/// What the view asks the app to do.
pub enum Ask {
    Start,
    Cancel,
}

pub fn ui(
    ui: &mut Ui,
    many: &mut ManyRuns,
    picked: Option<&super::Picked>,
    presenter: bool,
) -> Option<Ask> {
    let mut ask = None;
    let Some(p) = picked else {
        ui.weak("Pick a scenario on the left first.");
        return None;
    };
    let both = has_lock_switch(p);
    ui.heading(format!("Many runs: {}", p.loaded.scenario.title));
    let params: Vec<String> = p
        .params
        .iter()
        .filter(|(k, _)| !(both && k.as_str() == "lock"))
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    if !params.is_empty() {
        ui.weak(format!("parameters: {}", params.join(", ")));
    }
    let running = many.is_running();
    ui.horizontal_wrapped(|ui| {
        ui.add_enabled_ui(!running, |ui| {
            // Each field named by its label (screen readers, tests).
            let runs = ui.label("runs").id;
            ui.add(egui::DragValue::new(&mut many.runs).range(1..=MAX_RUNS))
                .labelled_by(runs);
            ui.separator();
            ui.radio_value(&mut many.seeded, true, "Seeded")
                .on_hover_text("Each run picks its order with a seeded scheduler: run i uses seed S+i, so the same S gives the same histogram");
            let seed = ui.label("first seed").id;
            ui.add(egui::DragValue::new(&mut many.first_seed))
                .labelled_by(seed);
            ui.radio_value(&mut many.seeded, false, "Free")
                .on_hover_text("The operating system schedules, as in a normal run (results vary)");
        });
        ui.separator();
        let runs_word = if both {
            format!("{START} (2 × {})", many.runs)
        } else {
            format!("{START} ({})", many.runs)
        };
        if running {
            if ui.button(CANCEL).clicked() {
                ask = Some(Ask::Cancel);
            }
        } else if ui
            .button(runs_word)
            .on_hover_text("Run the scenario for real, again and again, in the background")
            .clicked()
        {
            ask = Some(Ask::Start);
        }
    });
    if both {
        ui.label("This scenario has a lock switch: every run goes once without the lock and once with it, side by side.");
    }
    let Some(t) = many.tally.as_ref() else {
        ui.add_space(12.0);
        ui.weak("Press Start: the bars show how often each final result came out.");
        return ask;
    };
    let total = t.total().max(1);
    let done = t.done();
    let status = if let Some(e) = &t.error {
        RichText::new(e).color(okabe_ito::VERMILLION)
    } else if t.cancelled {
        RichText::new(format!("cancelled after {done} of {total} runs"))
    } else if t.finished {
        RichText::new(format!("{done} runs done ({})", t.how))
    } else {
        RichText::new(format!("running… {done} of {total} ({})", t.how))
    };
    ui.add(
        egui::ProgressBar::new(done as f32 / total as f32)
            .text(status)
            .desired_width(ui.available_width().min(600.0)),
    );
    if let Some(line) = verdict(t) {
        ui.label(
            RichText::new(line)
                .size(if presenter { 20.0 } else { 16.0 })
                .strong(),
        );
    }
    chart(ui, t, presenter);
    table(ui, t);
    ask
}

/// One sentence for the lock switch: "With the lock every run ended with
/// counter = 2; without it, 8 of 20 runs did not." `None` until it holds.
pub fn verdict(t: &Tally) -> Option<String> {
    let [off, on] = t.series.as_slice() else {
        return None;
    };
    if on.done == 0 || off.done == 0 {
        return None;
    }
    let mut with_lock = on.counts.keys();
    let (Some(only), None) = (with_lock.next(), with_lock.next()) else {
        return None;
    };
    let other = off
        .counts
        .iter()
        .filter(|(o, _)| *o != only)
        .map(|(_, n)| n)
        .sum::<u64>();
    let every = if on.done == 1 { "the run" } else { "every run" };
    Some(format!(
        "With the lock {every} ended with {}; without it, {other} of {} runs did not.",
        outcome_label(only),
        off.done
    ))
}

/// Does the scenario have a `lock` switch (true/false)?
pub fn has_lock_switch(p: &super::Picked) -> bool {
    p.loaded
        .scenario
        .params
        .get("lock")
        .is_some_and(|param| matches!(param.default, Value::Bool(_)))
}

fn chart(ui: &mut Ui, t: &Tally, presenter: bool) {
    let outcomes = t.outcomes();
    let labels: Vec<String> = outcomes.iter().map(outcome_label).collect();
    let m = t.series.len().max(1);
    let width = 0.8 / m as f64;
    let height = (ui.available_height() - 140.0).clamp(180.0, 520.0);
    let text_size = if presenter { 18.0 } else { 14.0 };
    let x_labels = labels.clone();
    let n = outcomes.len();
    Plot::new("many_runs_histogram")
        .height(height)
        .legend(
            Legend::default()
                .position(Corner::LeftTop)
                .follow_insertion_order(true),
        )
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .show_crosshair(false)
        .show_x(false)
        .show_y(false)
        .show_grid([false, true])
        .include_y(0.0)
        // Headroom over the tallest possible bar for the legend.
        .include_y(t.runs_each as f64 * 1.4)
        .include_x(-0.6)
        .include_x(n as f64 - 0.4)
        .x_axis_label("final result of a run")
        .y_axis_label("runs")
        .x_grid_spacer(move |_| {
            (0..n)
                .map(|i| GridMark {
                    value: i as f64,
                    step_size: 1.0,
                })
                .collect()
        })
        .x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                x_labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            for (k, s) in t.series.iter().enumerate() {
                let offset = (k as f64 - (m as f64 - 1.0) / 2.0) * width;
                let color = series_color(k, presenter);
                let bars: Vec<Bar> = outcomes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, o)| {
                        let count = *s.counts.get(o)?;
                        Some(
                            Bar::new(i as f64 + offset, count as f64)
                                .width(width * 0.95)
                                .name(format!("{}: {count} runs", labels[i]))
                                .fill(color),
                        )
                    })
                    .collect();
                for b in &bars {
                    plot.text(
                        // No name: the counts stay out of the legend.
                        Text::new(
                            "",
                            egui_plot::PlotPoint::new(b.argument, b.value),
                            RichText::new(format!("{}", b.value))
                                .size(text_size)
                                .strong(),
                        )
                        .id(("count", k, b.argument.to_bits()))
                        .allow_hover(false)
                        .anchor(egui::Align2::CENTER_BOTTOM),
                    );
                }
                plot.bar_chart(BarChart::new(s.label.clone(), bars).color(color));
            }
        });
}

/// The same numbers as words (and for screen readers).
fn table(ui: &mut Ui, t: &Tally) {
    let outcomes = t.outcomes();
    egui::Grid::new("many_runs_table")
        .striped(true)
        .num_columns(1 + t.series.len())
        .show(ui, |ui| {
            ui.strong("final result");
            for s in &t.series {
                ui.strong(&s.label);
            }
            ui.end_row();
            for o in &outcomes {
                let label = outcome_label(o);
                let color = if o.deadlock {
                    okabe_ito::VERMILLION
                } else {
                    ui.visuals().text_color()
                };
                ui.label(RichText::new(&label).color(color));
                for s in &t.series {
                    let n = s.counts.get(o).copied().unwrap_or(0);
                    let pct = if s.done > 0 {
                        100.0 * n as f64 / f64::from(s.done)
                    } else {
                        0.0
                    };
                    ui.label(format!("{n} runs ({pct:.0} %)"))
                        .on_hover_text(format!("{}: {label}", s.label));
                }
                ui.end_row();
            }
            if t.series.iter().any(|s| s.timed_out > 0) {
                ui.label("timed out");
                for s in &t.series {
                    ui.label(format!("{} runs", s.timed_out));
                }
                ui.end_row();
            }
        });
}
