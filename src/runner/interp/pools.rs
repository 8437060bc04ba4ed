//! `Pool`: worker processes that loop reading tasks from a real pipe and
//! writing results to another; results and callbacks are taken in by the
//! owner while it sleeps or calls the pool again.

use super::*;

pub(super) struct PoolState {
    pub(super) tasks_w: OwnedFd,
    pub(super) results_r: OwnedFd,
    pub(super) workers: Vec<usize>,
    pub(super) next_task: u32,
    /// Tasks sent and not answered yet, with their callback role.
    pub(super) pending: BTreeMap<u32, Option<String>>,
    pub(super) results: BTreeMap<u32, Value>,
    pub(super) closed: bool,
    pub(super) joined: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) enum TaskPacket {
    Task {
        task: u32,
        role: String,
        args: Vec<(String, Value)>,
    },
    /// `close`'s stop (CPython's `None`), one per worker: the `n`th of
    /// them (from 1), so that each has its own message id in the model.
    Stop { n: u32 },
}

#[derive(Serialize, Deserialize)]
pub(super) struct ResultPacket {
    pub(super) task: u32,
    pub(super) value: Value,
}

impl Proc<'_> {
    /// The result pipes of this process's pools that still owe results:
    /// what Python's result-handler thread listens to while the owner
    /// sleeps or waits.
    pub(super) fn awaited_results(&self) -> Vec<(String, OwnedFd)> {
        self.pools
            .iter()
            .filter(|(_, p)| !p.pending.is_empty())
            .filter_map(|(n, p)| Some((n.clone(), p.results_r.try_clone().ok()?)))
            .collect()
    }

    /// Waits until child `ns_pid` may have ended, taking in (and calling
    /// back for) every pool result that arrives meanwhile.
    pub(super) fn await_child_or_results(&mut self, ns_pid: Pid, awaited: &[(String, OwnedFd)]) {
        // The child's end wakes us through a pidfd; without one, look again
        // every 10 ms.
        let child = crate::collector::pidfd_open(ns_pid.as_raw());
        let mut fds: Vec<_> = awaited.iter().map(|(_, fd)| fd.as_fd()).collect();
        if let Some(c) = &child {
            fds.push(c.as_fd());
        }
        let timeout_ms = if child.is_some() { i32::MAX } else { 10 };
        if let Some(i) = os::first_readable(&fds, timeout_ms)
            && let Some((pool, _)) = awaited.get(i)
            && let Err(e) = self.drain_results(pool, false)
        {
            self.probe.emit(Body::Error { message: e.0 });
        }
    }

    pub(super) fn pool_mut(&mut self, name: &str) -> Result<&mut PoolState, RunError> {
        self.pools
            .get_mut(name)
            .ok_or_else(|| RunError(format!("pool {name} was not created by this process")))
    }

    pub(super) fn create_pool(&mut self, name: &str, workers: u32) -> Result<(), RunError> {
        let (tasks_r, tasks_w) = os::packet_pipe()?;
        let (results_r, results_w) = os::packet_pipe()?;
        self.probe.emit(Body::Resource {
            res: ResourceKind::Pool,
            name: name.to_string(),
            value: None,
            size: Some(workers),
            ends: vec![],
            duplex: false,
        });
        let prefix = if self.probe.id == "main" {
            name.to_string()
        } else {
            format!("{}.{name}", self.probe.id)
        };
        // Each worker's Process.start() flushes stdout first.
        self.flush_stdout()?;
        let mut ids = Vec::new();
        for k in 1..=workers {
            let id = format!("{prefix}.w{k}");
            match self.fork_child(id, format!("pool:{name}").into(), false, true)? {
                Forked::Parent(i) => ids.push(i),
                Forked::Child => {
                    drop(tasks_w);
                    drop(results_r);
                    self.worker_loop(name, &tasks_r, &results_w);
                    self.finish(0)
                }
            }
        }
        drop(tasks_r);
        drop(results_w);
        self.pools.insert(
            name.to_string(),
            PoolState {
                tasks_w,
                results_r,
                workers: ids,
                next_task: 0,
                pending: BTreeMap::new(),
                results: BTreeMap::new(),
                closed: false,
                joined: false,
            },
        );
        Ok(())
    }

    /// A pool worker: take a task, run it, send the result, until told to stop.
    pub(super) fn worker_loop(&mut self, pool: &str, tasks: &OwnedFd, results: &OwnedFd) {
        loop {
            let packet = match self.read_one(
                tasks.as_fd(),
                "waiting for a task",
                &format!("take a task from {pool}"),
                &format!("pool-tasks:{pool}"),
            ) {
                Ok(Some(p)) => p,
                _ => return,
            };
            let (task, role, args) = match serde_json::from_slice(&packet) {
                Ok(TaskPacket::Task { task, role, args }) => (task, role, args),
                Ok(TaskPacket::Stop { n }) => {
                    // The model counts what is in the tasks pipe (a gated
                    // run's scheduler lets a worker take from it only
                    // when something is there): the stop is taken.
                    self.probe.emit(Body::Get {
                        channel: format!("{pool}.tasks"),
                        msg: crate::protocol::pool_stop_msg(pool, n),
                        value: Value::Str("stop".into()),
                    });
                    return;
                }
                Err(_) => return,
            };
            self.probe.emit(Body::Get {
                channel: format!("{pool}.tasks"),
                msg: format!("{pool}:task{task}"),
                value: Value::Str(call_text(&role, &args)),
            });
            self.probe.emit(Body::TaskStart {
                pool: pool.to_string(),
                task,
                func: role.clone(),
            });
            let saved = std::mem::take(&mut self.vars);
            self.derived.clear();
            self.vars = self.run.scenario.globals.clone();
            self.vars.extend(args);
            let steps = match self.run.scenario.roles.get(&role) {
                Some(r) => &r.steps,
                None => {
                    self.fail(RunError(format!("no role {role}")));
                    continue;
                }
            };
            let value = match self.steps_guarded(steps) {
                Ok(Flow::Return(v)) => v,
                Ok(_) => Value::None,
                Err(e) => {
                    self.fail(e);
                    Value::None
                }
            };
            self.vars = saved;
            self.probe.emit(Body::TaskDone {
                pool: pool.to_string(),
                task,
                value: value.clone(),
            });
            self.probe.emit(Body::Send {
                channel: format!("{pool}.results"),
                end: String::new(),
                msg: format!("{pool}:result{task}"),
                value: value.clone(),
            });
            let bytes = serde_json::to_vec(&ResultPacket { task, value }).unwrap_or_default();
            if write_message(results.as_fd(), &bytes).is_err() {
                return;
            }
        }
    }

    pub(super) fn submit(
        &mut self,
        pool: &str,
        role: &str,
        args: Vec<(String, Value)>,
        callback: Option<String>,
    ) -> Result<u32, RunError> {
        let p = self.pool_mut(pool)?;
        if p.closed {
            return Err(RunError(format!(
                "ValueError: Pool not running (pool {pool} is closed)"
            )));
        }
        let task = p.next_task;
        p.next_task += 1;
        p.pending.insert(task, callback);
        let text = call_text(role, &args);
        let bytes = serde_json::to_vec(&TaskPacket::Task {
            task,
            role: role.to_string(),
            args,
        })
        .unwrap_or_default();
        self.probe.emit(Body::Put {
            channel: format!("{pool}.tasks"),
            msg: format!("{pool}:task{task}"),
            value: Value::Str(text),
        });
        let p = self.pool_mut(pool)?;
        write_message(p.tasks_w.as_fd(), &bytes)?;
        Ok(task)
    }

    /// Takes in finished results (waiting for at least one if `wait`), and
    /// runs their callbacks here, in the pool's owner.
    pub(super) fn drain_results(&mut self, pool: &str, wait: bool) -> Result<(), RunError> {
        let mut first = true;
        loop {
            let p = self.pool_mut(pool)?;
            let owed = !p.pending.is_empty();
            let fd = p
                .results_r
                .try_clone()
                .map_err(|e| RunError(e.to_string()))?;
            let must_wait = wait && first;
            // Nothing owed, nothing to take in: the pipe is readable then
            // only at its end of file (every worker gone after `close`),
            // and a gated run would announce a read nobody can satisfy
            // (the model shows nothing in flight), a deadlock that is not.
            if !must_wait && (!owed || !readable(fd.as_fd(), 0)) {
                return Ok(());
            }
            first = false;
            let Some(bytes) = self.read_one(
                fd.as_fd(),
                &format!("waiting for {pool} results"),
                &format!("wait for a result from {pool}"),
                &format!("pool-results:{pool}"),
            )?
            else {
                // Every worker has exited (after close): fine unless a
                // result is still owed.
                if self.pool_mut(pool)?.pending.is_empty() {
                    return Ok(());
                }
                return Err(RunError(format!("the workers of {pool} are gone")));
            };
            let r: ResultPacket = serde_json::from_slice(&bytes)
                .map_err(|e| RunError(format!("a garbled result from {pool}: {e}")))?;
            self.probe.emit(Body::Recv {
                channel: format!("{pool}.results"),
                end: String::new(),
                msg: format!("{pool}:result{}", r.task),
                value: r.value.clone(),
            });
            let p = self.pool_mut(pool)?;
            let callback = p.pending.remove(&r.task).flatten();
            p.results.insert(r.task, r.value.clone());
            if let Some(cb) = callback {
                self.run_callback(&cb, r.value)?;
            }
        }
    }

    pub(super) fn run_callback(&mut self, role: &str, value: Value) -> Result<(), RunError> {
        let Some(r) = self.run.scenario.roles.get(role) else {
            return Err(RunError(format!("no role {role}")));
        };
        let arg = r.args.first().cloned().unwrap_or_else(|| "result".into());
        let saved = std::mem::take(&mut self.vars);
        let derived = std::mem::take(&mut self.derived);
        self.vars = self.run.scenario.globals.clone();
        self.vars.insert(arg, value);
        let r = self.steps(&r.steps);
        self.vars = saved;
        self.derived = derived;
        r.map(|_| ())
    }

    pub(super) fn join_pool(&mut self, pool: &str) -> Result<(), RunError> {
        if !self.pool_mut(pool)?.closed {
            return Err(RunError(format!(
                "ValueError: pool {pool} is still running (close it before join)"
            )));
        }
        while !self.pool_mut(pool)?.pending.is_empty() {
            self.drain_results(pool, true)?;
        }
        let workers = self.pool_mut(pool)?.workers.clone();
        for i in workers {
            self.join_child(i, self.gated());
        }
        self.pool_mut(pool)?.joined = true;
        Ok(())
    }
}
