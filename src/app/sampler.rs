//! CPU % and RSS of the run's processes, sampled ~4 times a second on a
//! thread of its own, only while a run is going. Only pids the run told us
//! about are looked at.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

const SAMPLE_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub cpu_percent: f32,
    pub rss_bytes: u64,
}

/// Stops its thread when dropped.
pub struct Sampler {
    pids: Arc<Mutex<Vec<i32>>>,
    samples: Arc<Mutex<BTreeMap<i32, Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// `None` if the thread cannot be started (the app goes on without).
    pub fn start(repaint: impl Fn() + Send + 'static) -> Option<Sampler> {
        let pids: Arc<Mutex<Vec<i32>>> = Arc::default();
        let samples: Arc<Mutex<BTreeMap<i32, Sample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, halt) = (pids.clone(), samples.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let Ok(mut system) = System::new() else {
                    return;
                };
                while !halt.load(Ordering::Relaxed) {
                    let wanted: Vec<Pid> = p
                        .lock()
                        .map(|v| v.iter().map(|pid| Pid::from_u32(*pid as u32)).collect())
                        .unwrap_or_default();
                    if !wanted.is_empty() {
                        system.refresh_processes_specifics(
                            ProcessesToUpdate::Some(&wanted),
                            true,
                            ProcessRefreshKind::nothing().with_cpu().with_memory(),
                        );
                        let fresh: BTreeMap<i32, Sample> = wanted
                            .iter()
                            .filter_map(|pid| {
                                let proc_ = system.process(*pid)?;
                                Some((
                                    pid.as_u32() as i32,
                                    Sample {
                                        cpu_percent: proc_.cpu_usage(),
                                        rss_bytes: proc_.memory(),
                                    },
                                ))
                            })
                            .collect();
                        if let Ok(mut out) = s.lock() {
                            *out = fresh;
                        }
                        repaint();
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
            .ok()?;
        Some(Sampler {
            pids,
            samples,
            stop,
            thread: Some(thread),
        })
    }

    /// The pids to look at from now on.
    pub fn watch(&self, pids: Vec<i32>) {
        if let Ok(mut p) = self.pids.lock() {
            *p = pids;
        }
    }

    pub fn get(&self, pid: i32) -> Option<Sample> {
        self.samples.lock().ok()?.get(&pid).copied()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
