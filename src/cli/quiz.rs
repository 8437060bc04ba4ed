//! `forkscope quiz NAME`: predict, then run. Asks the scenario's questions
//! in the terminal (answers read from stdin, a terminal or a pipe), runs
//! the scenario for real, then prints each real answer, whether the
//! prediction was right, and the event that decided it.

use super::run::{catch_interrupts, interrupted, prepare};
use super::{QuizArgs, load_target};
use crate::lab;
use crate::model::World;
use crate::protocol::{Body, Event};
use crate::scenario::catalog;
use crate::scenario::quiz::{Guess, Question};
use crossbeam_channel::RecvTimeoutError;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// How many times a question is asked again after an answer it cannot read.
const RETRIES: usize = 3;

pub fn quiz(args: &QuizArgs) -> i32 {
    let p = match prepare(&args.common, false) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    let questions = p.loaded.scenario.quiz.clone();
    if questions.is_empty() {
        let with: Vec<&str> = catalog::BUILTINS
            .iter()
            .filter(|b| load_target(b.name).is_ok_and(|l| !l.scenario.quiz.is_empty()))
            .map(|b| b.name)
            .collect();
        eprintln!(
            "forkscope: {} asks no questions (no [[quiz]]); these do: {}",
            p.loaded.origin_arg(),
            with.join(", ")
        );
        return 2;
    }
    let stdin = std::io::stdin();
    let piped = !stdin.is_terminal();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: {}\nPredict, then run. {}\n",
        p.loaded.scenario.name,
        p.loaded.scenario.title,
        plural(questions.len(), "question")
    );
    let mut guesses: Vec<Option<Guess>> = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        let _ = ask(&mut out, i, questions.len(), q);
        guesses.push(read_guess(&mut input, &mut out, q, piped));
    }
    let _ = writeln!(out, "\nRunning {} for real...", p.loaded.scenario.name);
    let _ = out.flush();
    catch_interrupts();
    let (events, cut_short) = match run_collect(&p) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("forkscope: {e:#}");
            return 1;
        }
    };
    let world = World::from_events(&events);
    let _ = writeln!(out, "--- terminal ---");
    let merged = world.merged_output.text();
    let _ = write!(out, "{merged}");
    if !merged.is_empty() && !merged.ends_with('\n') {
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "--- end of terminal ---\n");
    let mut right = 0;
    for (i, (q, g)) in questions.iter().zip(&guesses).enumerate() {
        let o = q.evaluate(&events);
        let _ = writeln!(out, "Question {}: {}", i + 1, q.ask);
        match &o.answer {
            Some(a) => {
                let varies = if q.varies {
                    " (this run's answer: it varies from run to run)"
                } else {
                    ""
                };
                let _ = writeln!(out, "  answer: {a}{varies}");
                match g {
                    Some(g) if q.is_right(g, a) => {
                        right += 1;
                        let _ = writeln!(out, "  you said: {} — right!", q.guess_text(g));
                    }
                    Some(g) => {
                        let _ = writeln!(out, "  you said: {} — wrong", q.guess_text(g));
                    }
                    None => {
                        let _ = writeln!(out, "  you said nothing");
                    }
                }
                if !q.choices.is_empty() && q.right_choice(a).is_none() {
                    let _ = writeln!(out, "  (none of the choices was this run's answer)");
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  answer: none this run ({})",
                    o.note.as_deref().unwrap_or("the run did not say")
                );
            }
        }
        match &o.decider {
            Some(d) => {
                let _ = writeln!(out, "  decided by: {d}");
            }
            None => {
                if let (Some(n), Some(_)) = (&o.note, &o.answer) {
                    let _ = writeln!(out, "  decided by: the whole run ({n})");
                }
            }
        }
        if !q.explain.is_empty() {
            let _ = writeln!(out, "  why: {}", q.explain);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{right} of {} right.", questions.len());
    if cut_short {
        let _ = writeln!(
            out,
            "(the run was stopped before its end: these are the answers so far)"
        );
    }
    let _ = out.flush();
    // Stopped by Ctrl-C or the timeout: not a whole run.
    i32::from(cut_short)
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn ask(out: &mut impl Write, i: usize, n: usize, q: &Question) -> std::io::Result<()> {
    writeln!(out, "Question {} of {n}: {}", i + 1, q.ask)?;
    if q.varies {
        writeln!(out, "  (a race: the answer varies from run to run)")?;
    }
    if q.choices.is_empty() {
        write!(out, "Type a number: ")?;
    } else {
        for (k, c) in q.choices.iter().enumerate() {
            writeln!(out, "  {}) {c}", k + 1)?;
        }
        write!(out, "Your answer (1-{}): ", q.choices.len())?;
    }
    out.flush()
}

/// One answer from the input; None at end of input (or after retries).
fn read_guess(
    input: &mut impl BufRead,
    out: &mut impl Write,
    q: &Question,
    piped: bool,
) -> Option<Guess> {
    for _ in 0..=RETRIES {
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = writeln!(out, "\n(no answer)");
                return None;
            }
            Ok(_) => {}
        }
        // Echo when the answer came from a pipe, so the transcript reads well.
        match q.parse_guess(&line) {
            Ok(g) => {
                if piped {
                    let _ = writeln!(out, "{}", q.guess_text(&g));
                }
                return Some(g);
            }
            Err(e) => {
                let _ = write!(out, "{}{e}. Again: ", if piped { "\n" } else { "" });
                let _ = out.flush();
            }
        }
    }
    let _ = writeln!(out, "\n(no answer)");
    None
}

/// A free run, every event kept; stopped at its timeout, on Ctrl-C, or
/// at a deadlock (which is then the last event). True: cut short (Ctrl-C
/// or the timeout; a deadlock is an end like any other).
fn run_collect(p: &super::run::Prepared) -> anyhow::Result<(Vec<Event>, bool)> {
    let mut session = p.start(crate::session::Reading::Thread)?;
    let timeout = Duration::from_secs_f64(p.opts.limits.timeout_s);
    let mut world = World::new();
    let mut events = Vec::new();
    let mut stopped = false;
    let mut cut_short = false;
    let rx = session.collector.events.clone();
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(e) => {
                world.apply(&e);
                let waits = matches!(e.body, Body::LockWait { .. } | Body::Block { .. });
                events.push(e);
                if waits
                    && !stopped
                    && let Some(cycle) = lab::deadlock::in_world(&world)
                {
                    let d = lab::deadlock_event(&cycle);
                    world.apply(&d);
                    events.push(d);
                    stopped = true;
                    session.stop();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Polling the runner's end also tells the collector to finish.
        let ended = session.poll_exit().is_some();
        if !stopped && !ended && (interrupted() || session.started.elapsed() > timeout) {
            stopped = true;
            cut_short = true;
            if interrupted() {
                eprintln!("forkscope: interrupted; every process of the run was stopped");
            } else {
                eprintln!(
                    "forkscope: the run took longer than {} s and was stopped",
                    p.opts.limits.timeout_s
                );
            }
            session.stop();
        }
    }
    Ok((events, cut_short))
}
