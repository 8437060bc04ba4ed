//! The run's life as the app drives it: start, pause, play, stop, step
//! mode (a step, undo, back to a step, schedules saved and loaded), Many
//! runs, and draining the collector's events into the recording. Methods
//! of [`App`] that [`App::apply`] calls for its commands.

use super::*;

impl App {
    /// Entering step mode: the scenario's small parameters (`step = N` on a
    /// parameter), so a learner steps through a whole run by hand.
    pub(super) fn use_step_params(&mut self) {
        let Some(p) = self.picked.as_mut() else {
            return;
        };
        let mut set = Vec::new();
        let mut changed = false;
        for (k, param) in &p.loaded.scenario.params {
            if let Some(v) = &param.step {
                changed |= p.params.get(k) != Some(v);
                p.params.insert(k.clone(), v.clone());
                set.push(format!("{k} = {}", v.repr()));
            }
        }
        if changed {
            self.status = Some(format!(
                "step mode: small parameters to step through by hand: {} \
                 (change them, or Reset, in the parameters)",
                set.join(", ")
            ));
        }
    }

    /// Step mode: `id` takes one step (if it may).
    pub(super) fn step(&mut self, id: &str) {
        let Some(g) = self.gated.as_mut().filter(|_| self.run.is_running()) else {
            return;
        };
        if !g.manual() {
            return;
        }
        match g.pick(id, &self.rec.live) {
            Ok(()) => {
                self.status = None;
                self.selected = Some(id.to_string());
                // Back to the newest moment: the step happens now.
                self.time.follow = true;
                self.time.playing = true;
            }
            Err(e) => self.status = Some(e),
        }
    }

    /// One chosen step back: run again, replaying the schedule without
    /// its last choice, then go on by hand.
    pub(super) fn undo(&mut self) {
        let Some(prefix) = self.gated.as_ref().and_then(|g| g.undo_prefix()) else {
            return;
        };
        self.stop_now();
        self.mode = lab::Mode::Step;
        let n = prefix.len();
        self.start_run(prefix);
        if self.status.is_none() {
            self.status = Some(format!(
                "Undo: a fresh run (new processes, new pids) replays the first {n} steps, \
             then it is your turn"
            ));
        }
    }

    /// Back to just after step `n`: a fresh run replays the first `n`
    /// steps, then the learner picks again.
    pub(super) fn return_to_step(&mut self, n: usize) {
        let Some(prefix) = self
            .gated
            .as_ref()
            .map(|g| g.schedule[..n.min(g.schedule.len())].to_vec())
        else {
            return;
        };
        self.stop_now();
        self.mode = lab::Mode::Step;
        self.start_run(prefix);
        if self.status.is_none() {
            self.status = Some(format!(
                "back to step {n}: a fresh run (new processes, new pids) replays the first {n} steps"
            ));
        }
    }

    /// Replays a schedule file in step mode, with the scenario and the
    /// parameters it names (a replay with others would go elsewhere).
    pub(super) fn load_schedule(&mut self, path: &std::path::Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.status = Some(format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let file = crate::lab::schedule::ScheduleFile::parse(&text);
        if file.ids.is_empty() {
            self.status = Some(format!("{} names no steps", path.display()));
            return;
        }
        self.stop_now();
        let current = self.picked.as_ref().map(|p| p.loaded.scenario.name.clone());
        if let Some(name) = file
            .scenario
            .as_ref()
            .filter(|n| Some(*n) != current.as_ref())
        {
            if crate::scenario::catalog::BUILTINS
                .iter()
                .any(|b| b.name == name)
            {
                self.pick(name);
            } else {
                self.status = Some(format!(
                    "{} is a schedule for {name}: open that scenario first",
                    path.display()
                ));
                return;
            }
        }
        let Some(p) = self.picked.as_mut() else {
            return;
        };
        if !file.sets.is_empty() {
            match scenario::resolve_params(&p.loaded.scenario, &file.sets) {
                Ok(params) => p.params = params,
                Err(e) => {
                    self.status = Some(format!("{}: {e}", path.display()));
                    return;
                }
            }
        }
        self.mode = lab::Mode::Step;
        self.step_bar.open = None;
        self.gated = None;
        let steps = file.ids.len();
        self.start_run(file.ids);
        if self.run.is_running() {
            self.status = Some(format!("loaded {} ({steps} steps)", path.display()));
        }
    }

    pub(super) fn save_schedule(&mut self, path: &std::path::Path) {
        let (Some(p), Some(g)) = (self.picked.as_ref(), self.gated.as_ref()) else {
            self.status = Some("nothing to save: run in Step or Seeded mode first".into());
            return;
        };
        if path.as_os_str().is_empty() {
            self.status = Some("type a file name to save the schedule to".into());
            return;
        }
        // The proposed folder is made on first use (0700, and it must be ours).
        let default_dir = crate::lab::schedule::default_dir();
        if path.parent() == Some(default_dir.as_path())
            && let Err(e) = crate::safe_fs::own_dir(&default_dir)
        {
            self.status = Some(format!("cannot use {}: {e}", default_dir.display()));
            return;
        }
        match crate::lab::schedule::write(
            path,
            &p.loaded.scenario.name,
            p.loaded.origin_arg(),
            &p.params,
            &g.schedule,
        ) {
            Ok(()) => {
                self.status = Some(format!(
                    "saved {} steps to {}",
                    g.schedule.len(),
                    path.display()
                ));
                self.step_bar.open = None;
            }
            Err(e) => self.status = Some(format!("cannot write {}: {e}", path.display())),
        }
    }

    pub(super) fn start_many_runs(&mut self) {
        let Some(p) = self.picked.as_ref() else {
            return;
        };
        let scenario_limits = match p.may_run() {
            Ok(l) => l,
            Err(why) => {
                self.status = Some(why);
                return;
            }
        };
        let plan = many::Plan {
            scenario_name: p.loaded.scenario.name.clone(),
            text: p.loaded.text.clone(),
            origin: p.loaded.origin.clone(),
            params: p.params.clone(),
            time_scale: self.time_scale,
            runs: self.many.runs,
            seeded: self.many.seeded,
            first_seed: self.many.first_seed,
            both_locks: many::has_lock_switch(p),
            max_procs: scenario_limits.max_procs,
            // A Python program runs traced, as `forkscope stats` runs it.
            python: p.python.clone(),
        };
        if let Some(ctx) = self.egui_ctx.clone() {
            self.many.start(plan, ctx);
        }
    }

    pub(super) fn pick(&mut self, target: &str) {
        self.pick_error = None;
        match load_target(target) {
            Ok(loaded) => {
                let params = scenario::resolve_params(&loaded.scenario, &[]).unwrap_or_default();
                self.picked = Some(Picked {
                    loaded,
                    params,
                    exec_confirmed: false,
                    python: None,
                });
                self.status = None;
            }
            Err(e) => self.pick_error = Some(e.to_string()),
        }
    }

    pub(super) fn pause(&mut self) {
        if self.time.follow {
            self.time.cursor_t_ns = self.live_t_ns();
        }
        self.time.follow = false;
        self.time.playing = false;
    }

    pub(super) fn play(&mut self) {
        let live = self.live_t_ns();
        if self.time.follow || self.time.cursor_t_ns >= live {
            self.time.follow = true;
        }
        self.time.playing = true;
    }

    /// Starts a run in the current mode; a non-empty `prefix` (a schedule
    /// to replay first) makes it gated.
    pub(super) fn start_run(&mut self, prefix: Vec<String>) {
        let Some(p) = self.picked.as_ref() else {
            self.status = Some("pick a scenario first".into());
            return;
        };
        let scenario_limits = match p.may_run() {
            Ok(l) => l,
            Err(why) => {
                self.status = Some(why);
                return;
            }
        };
        let gated = self.mode != lab::Mode::Free || !prefix.is_empty();
        let opts = RunOptions {
            time_scale: self.time_scale,
            seed: if self.mode == lab::Mode::Seeded {
                self.seed
            } else {
                now_ns()
            },
            limits: scenario_limits,
            gated,
            stdout: None,
            python: p.python.clone(),
        };
        let session = match Session::start(
            &p.loaded.text,
            &p.loaded.origin,
            p.params.clone(),
            &opts,
            crate::session::Reading::Thread,
        ) {
            Ok(s) => s,
            Err(e) => {
                self.status = Some(format!("cannot start the run: {e:#}"));
                return;
            }
        };
        let (log_budget, checkpoint_budget) = self.rec_budgets_bytes;
        self.rec = Recording::with_budgets(log_budget, checkpoint_budget);
        self.time.reset();
        self.selected = None;
        self.status = None;
        self.collector_problems.clear();
        self.view_count = None;
        self.deadlock_cycle.clear();
        self.deadlock_world = None;
        self.gated = gated.then(|| {
            let then = match self.mode {
                lab::Mode::Seeded => Then::Seeded(self.seed),
                _ => Then::Manual,
            };
            lab::Gated::new(prefix, then)
        });
        self.run_started = Some(Instant::now());
        self.opened = None;
        self.run = RunState::Running {
            session: Box::new(session),
            sampler: Sampler::start(|| {}),
            stopping: false,
        };
    }

    /// Asks the run to stop; the last events still arrive and are shown.
    pub(super) fn request_stop(&mut self) {
        if let RunState::Running {
            session, stopping, ..
        } = &mut self.run
        {
            session.stop();
            *stopping = true;
        }
    }

    /// Stops the run at once (before a restart or another pick).
    pub(super) fn stop_now(&mut self) {
        if let RunState::Running { session, .. } = &mut self.run {
            session.stop();
            let duration = session.started.elapsed();
            let old = std::mem::replace(
                &mut self.run,
                RunState::Finished {
                    code: None,
                    stopped: true,
                    duration,
                },
            );
            retire(old);
        }
    }

    // ---- events and time --------------------------------------------------

    /// Reads what the collector has, within the frame's time budget.
    pub(super) fn drain(&mut self) {
        let RunState::Running {
            session,
            sampler,
            stopping,
        } = &mut self.run
        else {
            return;
        };
        let budget = if self.gated.is_some() {
            GATED_BUDGET
        } else {
            DRAIN_BUDGET
        };
        let deadline = Instant::now() + budget;
        let mut disconnected = false;
        let mut found_deadlock: Option<(String, Vec<WaitEdge>)> = None;
        let mut diverged: Option<String> = None;
        let events = session.collector.events.clone();
        'pump: loop {
            // Everything that is there (within the budget).
            loop {
                match events.try_recv() {
                    Ok(e) => {
                        let watch = !*stopping && found_deadlock.is_none();
                        let d = take_event(&mut self.rec, self.gated.as_mut(), e);
                        if watch && d.is_some() {
                            found_deadlock = d;
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        disconnected = true;
                        break 'pump;
                    }
                }
                if Instant::now() >= deadline {
                    break 'pump;
                }
            }
            // A gated run: once all is in, the scheduler (or the user) picks.
            let Some(g) = self.gated.as_mut() else {
                break;
            };
            if *stopping || found_deadlock.is_some() {
                break;
            }
            match g.next(&self.rec.live, session) {
                lab::Next::Went | lab::Next::Idle if !g.awaiting_user => {
                    // Wait a moment for what the process does.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match events.recv_timeout(left.min(Duration::from_millis(2))) {
                        Ok(e) => {
                            take_event(&mut self.rec, self.gated.as_mut(), e);
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            disconnected = true;
                            break;
                        }
                    }
                }
                lab::Next::Went | lab::Next::Idle => break,
                lab::Next::Stuck(cycle, edges) => {
                    found_deadlock = Some((cycle, edges));
                    break;
                }
                lab::Next::Diverged(id) => {
                    diverged = Some(id);
                    break;
                }
            }
        }
        if let Some((cycle, edges)) = found_deadlock {
            let e = crate::lab::deadlock_event(&cycle);
            let t = e.t_ns;
            self.rec.push(e);
            self.deadlock_cycle = edges;
            // Stopping kills the processes in no particular order (some
            // get adopted on the way): the stage keeps the tree as it was.
            self.deadlock_world = Some(self.rec.live.clone());
            session.stop();
            *stopping = true;
            // Stopping kills the processes: hold the picture at the moment
            // the circle closed (Live shows what came after).
            self.time.follow = false;
            self.time.playing = false;
            self.time.cursor_t_ns = t;
        }
        if let Some(id) = diverged {
            session.stop();
            *stopping = true;
            self.status = Some(format!(
                "the schedule says {id} goes next, but {id} cannot go here (a schedule for other parameters?)"
            ));
        }
        self.rec.log.dropped = session.collector.stats.dropped.load(Ordering::Relaxed);
        self.rec.log.garbage = session.collector.stats.garbage();
        self.collector_problems = session.collector.stats.summary();
        let code = session.poll_exit();
        if let Some(s) = sampler.as_ref() {
            // Processes waiting for the user's pick use no CPU: while the
            // run waits, the sampler rests too.
            let waiting = self.gated.as_ref().is_some_and(|g| g.awaiting_user);
            let pids: Vec<i32> = self
                .rec
                .live
                .processes
                .values()
                .filter(|p| !waiting && p.is_alive() && p.pid > 0 && p.id != RUNNER_ID)
                .map(|p| p.pid)
                .collect();
            s.watch(pids);
        }
        let timeout = Duration::from_secs_f64(limits::DEFAULT_TIMEOUT_S);
        // A run paced by the user takes as long as the user likes.
        let paced = self.gated.as_ref().is_some_and(|g| g.paced_by_user);
        if !*stopping && !paced && session.started.elapsed() > timeout {
            session.stop();
            *stopping = true;
            self.status = Some(format!(
                "the run took longer than {} s and was stopped",
                limits::DEFAULT_TIMEOUT_S
            ));
        }
        if disconnected {
            let duration = session.started.elapsed();
            let stopped = *stopping;
            let old = std::mem::replace(
                &mut self.run,
                RunState::Finished {
                    code: if stopped { None } else { code },
                    stopped,
                    duration,
                },
            );
            retire(old);
        }
    }
}
