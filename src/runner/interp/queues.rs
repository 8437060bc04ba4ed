//! `Queue(maxsize)`: an `O_DIRECT` pipe (each read takes one whole
//! message), a process-shared semaphore counting free slots when bounded
//! (so `put` really blocks when full), and an item count in shared memory
//! for `qsize`. `get` really blocks while the queue is empty.

use super::*;

impl Proc<'_> {
    /// Reads one message. Gated: a step of the schedule that is retried
    /// while nothing is there. Free: blocks, announcing the wait.
    pub(super) fn read_one(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        on: &str,
        action: &str,
        blocked_on: &str,
    ) -> Result<Option<Vec<u8>>, RunError> {
        if !self.gated() {
            return self.blocking_read(fd, on);
        }
        let mut announced = false;
        let r = self.gated_retry(action, blocked_on, |p| {
            if readable(fd, 0) {
                return read_message(fd).map(Some);
            }
            if !announced {
                announced = true;
                p.probe.emit(Body::Block { on: on.to_string() });
            }
            Ok(None)
        })?;
        if announced {
            self.probe.emit(Body::Unblock { on: on.to_string() });
        }
        Ok(r)
    }

    /// Reads one message, announcing the wait if nothing is there yet.
    pub(in crate::runner) fn blocking_read_pub(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        on: &str,
    ) -> Result<Option<Vec<u8>>, RunError> {
        self.blocking_read(fd, on)
    }

    pub(super) fn blocking_read(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        on: &str,
    ) -> Result<Option<Vec<u8>>, RunError> {
        let ready = readable(fd, 0);
        if !ready {
            self.probe.emit(Body::Block { on: on.to_string() });
        }
        let r = read_message(fd);
        if !ready {
            self.probe.emit(Body::Unblock { on: on.to_string() });
        }
        r
    }

    pub(super) fn put(&mut self, queue: &str, v: Value) -> Result<(), RunError> {
        let slots = format!("queue:{queue}");
        let bounded = self.run.shm.has_sem(&slots);
        if self.gated() {
            let action = format!("put {} on {queue}", brief(&v));
            let on = format!("put on full queue {queue}");
            let mut announced = false;
            self.gated_retry(&action, &format!("queue-put:{queue}"), |p| {
                if !bounded || p.run.shm.sem_try(&slots)? {
                    return Ok(Some(()));
                }
                if !announced {
                    announced = true;
                    p.probe.emit(Body::Block { on: on.clone() });
                }
                Ok(None)
            })?;
            if announced {
                self.probe.emit(Body::Unblock { on });
            }
        } else if bounded && !self.run.shm.sem_try(&slots)? {
            let on = format!("put on full queue {queue}");
            self.probe.emit(Body::Block { on: on.clone() });
            self.run.shm.sem_wait(&slots)?;
            self.probe.emit(Body::Unblock { on });
        }
        let msg = self.probe.msg_id();
        let bytes = serde_json::to_vec(&Packet {
            m: msg.clone(),
            v: v.clone(),
        })
        .unwrap_or_default();
        self.probe.emit(Body::Put {
            channel: queue.to_string(),
            msg,
            value: v,
        });
        self.run.shm.queue_depth_add(queue, 1);
        let q = self.run.queue(queue)?;
        write_message(q.1.as_fd(), &bytes)
    }

    pub(super) fn get(&mut self, queue: &str) -> Result<Value, RunError> {
        let run = self.run;
        let q = run.queue(queue)?;
        let bytes = self
            .read_one(
                q.0.as_fd(),
                &format!("get on empty queue {queue}"),
                &format!("get from {queue}"),
                &format!("queue-get:{queue}"),
            )?
            .ok_or_else(|| RunError(format!("queue {queue} is closed")))?;
        self.run.shm.queue_depth_add(queue, -1);
        let p: Packet = serde_json::from_slice(&bytes)
            .map_err(|e| RunError(format!("a garbled item in queue {queue}: {e}")))?;
        self.probe.emit(Body::Get {
            channel: queue.to_string(),
            msg: p.m,
            value: p.v.clone(),
        });
        let slots = format!("queue:{queue}");
        if self.run.shm.has_sem(&slots) {
            self.run.shm.sem_post(&slots)?;
        }
        Ok(p.v)
    }
}
