//! Locks: process-shared semaphores in the shared mapping. `acquire`
//! really blocks in the kernel (a futex) while another process holds it.

use super::*;

impl Proc<'_> {
    pub(super) fn lock(&mut self, l: &str) -> Result<(), RunError> {
        if self.run.scenario.thread_locks.contains(l) {
            return self.thread_lock(l);
        }
        if self.gated() {
            let mut waiting = false;
            self.gated_retry(&format!("acquire lock {l}"), &format!("lock:{l}"), |p| {
                if p.run.shm.sem_try(l)? {
                    return Ok(Some(()));
                }
                if !waiting {
                    waiting = true;
                    p.probe.emit(Body::LockWait {
                        lock: l.to_string(),
                    });
                }
                Ok(None)
            })?;
        } else if !self.run.shm.sem_try(l)? {
            self.probe.emit(Body::LockWait {
                lock: l.to_string(),
            });
            self.run.shm.sem_wait(l)?;
        }
        self.probe.emit(Body::LockAcquire {
            lock: l.to_string(),
        });
        Ok(())
    }
}
