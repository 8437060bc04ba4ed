//! The World projection, checked on hand-written event sequences: what a
//! learner would see on the stage at each point, without any process.

use super::*;
use crate::protocol::{Body, Event, ResourceKind, Stream, Value};

/// Builds events with increasing timestamps, like one run would.
#[derive(Default)]
struct Script {
    t_ns: u64,
    events: Vec<Event>,
}

impl Script {
    fn at(&mut self, proc_id: &str, body: Body) -> &mut Self {
        self.t_ns += 1_000;
        let pid = proc_id.len() as i32 * 100;
        self.events.push(Event {
            t_ns: self.t_ns,
            seq: self.events.len() as u64,
            proc_id: proc_id.into(),
            pid,
            line: None,
            thread: None,
            tid: None,
            body,
        });
        self
    }

    fn world(&self) -> World {
        World::from_events(&self.events)
    }
}

fn hello(parent: Option<&str>) -> Body {
    Body::Hello {
        ppid: 1,
        role: "r".into(),
        parent: parent.map(str::to_string),
        daemon: false,
        ns_pid: None,
        name: None,
        fds: vec![],
    }
}

fn spawn(child: &str) -> Body {
    Body::Spawn {
        child: child.into(),
        child_pid: 777,
        role: "worker".into(),
        daemon: false,
    }
}

fn resource(res: ResourceKind, name: &str, value: Option<Value>, size: Option<u32>) -> Body {
    Body::Resource {
        res,
        name: name.into(),
        value,
        size,
        ends: Vec::new(),
        duplex: false,
    }
}

fn exit(code: i32) -> Body {
    Body::Exit {
        code: Some(code),
        signal: None,
    }
}

fn reaped(by: &str) -> Body {
    Body::Reaped {
        by: by.into(),
        by_pid: 1,
        code: Some(0),
        signal: None,
    }
}

fn lock(kind: &str, name: &str) -> Body {
    let lock = name.to_string();
    match kind {
        "wait" => Body::LockWait { lock },
        "acquire" => Body::LockAcquire { lock },
        _ => Body::LockRelease { lock },
    }
}

fn rw(write: bool, name: &str, value: i64, private: bool) -> Body {
    let (name, value) = (name.to_string(), Value::Int(value));
    if write {
        Body::Write {
            name,
            value,
            private,
        }
    } else {
        Body::Read {
            name,
            value,
            private,
        }
    }
}

fn put(queue: &str, msg: &str, get: bool) -> Body {
    let (channel, msg, value) = (queue.to_string(), msg.to_string(), Value::Str(msg.into()));
    if get {
        Body::Get {
            channel,
            msg,
            value,
        }
    } else {
        Body::Put {
            channel,
            msg,
            value,
        }
    }
}

fn out(text: &str) -> Body {
    Body::Output {
        stream: Stream::Stdout,
        text: text.into(),
    }
}

/// runner → main → main.1, main.2
fn family() -> Script {
    let mut s = Script::default();
    s.at("runner", hello(None))
        .at("runner", spawn("main"))
        .at("main", hello(Some("runner")))
        .at("main", spawn("main.1"))
        .at("main", spawn("main.2"))
        .at("main.1", hello(Some("main")))
        .at("main.2", hello(Some("main")));
    s
}

fn ids(world: &World) -> Vec<(usize, String)> {
    world
        .processes_by_tree()
        .iter()
        .map(|r| (r.depth, r.process.id.clone()))
        .collect()
}

#[test]
fn locked_counter_has_one_holder_and_an_ordered_line() {
    let mut s = family();
    s.at("runner", resource(ResourceKind::Lock, "L", None, None))
        .at("main.1", lock("wait", "L"))
        .at("main.1", lock("acquire", "L"))
        .at("main.2", lock("wait", "L"))
        .at("main", lock("wait", "L"));
    let w = s.world();
    let l = &w.locks["L"];
    assert_eq!(l.holder.as_deref(), Some("main.1"));
    assert_eq!(l.waiters, ["main.2", "main"]);
    assert_eq!(
        w.processes["main.2"].state,
        ProcState::Blocked("lock L".into())
    );
    assert_eq!(w.processes["main.1"].state, ProcState::Running);
    assert_eq!(w.locks_held_by("main.1").len(), 1);

    s.at("main.1", lock("release", "L"))
        .at("main.2", lock("acquire", "L"));
    let w = s.world();
    let l = &w.locks["L"];
    assert_eq!(l.holder.as_deref(), Some("main.2"));
    assert_eq!(l.waiters, ["main"]);
    assert_eq!((l.acquire_count, l.contended_count), (2, 2));
    assert_eq!(w.processes["main.2"].state, ProcState::Running);
}

#[test]
fn any_process_may_release_a_lock() {
    let mut s = family();
    s.at("main.1", lock("acquire", "L"))
        .at("main.2", lock("release", "L"));
    assert_eq!(s.world().locks["L"].holder, None);
    s.at("main.2", lock("acquire", "L"));
    assert_eq!(s.world().locks["L"].holder.as_deref(), Some("main.2"));
}

#[test]
fn zombie_from_exit_until_reaped() {
    let mut s = family();
    s.at("main.1", exit(3));
    let w = s.world();
    let p = &w.processes["main.1"];
    assert_eq!(p.state, ProcState::Zombie);
    assert_eq!(p.exit, Some(ExitStatus::Code(3)));
    assert_eq!(
        p.exit.as_ref().map(ToString::to_string).as_deref(),
        Some("exit code 3")
    );

    s.at("main.1", reaped("main"));
    let w = s.world();
    let p = &w.processes["main.1"];
    assert_eq!(p.state, ProcState::Reaped);
    assert_eq!(p.reaped_by.as_deref(), Some("main"));
    // A late event about a dead process does not bring it back.
    s.at("main.1", Body::Wake {});
    assert_eq!(s.world().processes["main.1"].state, ProcState::Reaped);
}

#[test]
fn adoption_moves_the_node_and_remembers_the_first_parent() {
    let mut s = family();
    s.at("main", exit(0));
    let w = s.world();
    assert!(w.processes["main.1"].orphaned);
    assert!(!w.processes["main.1"].adopted);

    s.at(
        "main.1",
        Body::Adopted {
            by: "runner".into(),
            new_ppid: 1,
        },
    );
    let w = s.world();
    let p = &w.processes["main.1"];
    assert_eq!(p.parent.as_deref(), Some("runner"));
    assert_eq!(p.original_parent.as_deref(), Some("main"));
    assert!(p.adopted && p.orphaned);
    let kids: Vec<&str> = w.children("runner").iter().map(|p| p.id.as_str()).collect();
    assert_eq!(kids, ["main", "main.1"]);
    assert_eq!(
        ids(&w),
        [
            (0, "runner".to_string()),
            (1, "main".into()),
            (2, "main.2".into()),
            (1, "main.1".into()),
        ]
    );
}

#[test]
fn tree_is_depth_first_in_spawn_order() {
    let mut s = family();
    s.at("main.1", spawn("main.1.1"));
    assert_eq!(
        ids(&s.world()),
        [
            (0, "runner".to_string()),
            (1, "main".into()),
            (2, "main.1".into()),
            (3, "main.1.1".into()),
            (2, "main.2".into()),
        ]
    );
}

#[test]
fn queue_depth_goes_up_and_down() {
    let mut s = family();
    s.at("runner", resource(ResourceKind::Queue, "q", None, Some(2)))
        .at("main.1", put("q", "m1", false))
        .at("main.1", put("q", "m2", false));
    let w = s.world();
    let q = &w.channels["q"];
    assert_eq!(
        (q.kind, q.depth(), q.maxsize),
        (ChannelKind::Queue, 2, Some(2))
    );
    assert!(q.is_full());
    assert_eq!(q.in_flight[0].msg, "m1");

    s.at("main.2", put("q", "m1", true));
    let w = s.world();
    let q = &w.channels["q"];
    assert_eq!(q.depth(), 1);
    assert_eq!((q.sent_total, q.received_total), (2, 1));
    let d = &q.deliveries[0];
    assert_eq!(
        (d.from.as_deref(), d.to.as_str()),
        (Some("main.1"), "main.2")
    );
}

#[test]
fn pipe_message_is_in_flight_between_send_and_recv() {
    let mut s = family();
    let msg = |recv: bool| {
        let (channel, end, msg, value) = ("p".into(), "a".into(), "7".into(), Value::Int(5));
        if recv {
            Body::Recv {
                channel,
                end,
                msg,
                value,
            }
        } else {
            Body::Send {
                channel,
                end,
                msg,
                value,
            }
        }
    };
    s.at("main", msg(false));
    let w = s.world();
    let m = &w.channels["p"].in_flight;
    assert_eq!(
        (m.len(), m[0].from.as_str(), m[0].end.as_deref()),
        (1, "main", Some("a"))
    );

    s.at("main.1", msg(true));
    assert_eq!(s.world().channels["p"].depth(), 0);
}

#[test]
fn receive_before_send_does_not_leave_a_ghost_message() {
    let mut s = family();
    s.at("main.2", put("q", "x", true))
        .at("main.1", put("q", "x", false));
    let w = s.world();
    assert_eq!(w.channels["q"].depth(), 0);
    assert_eq!(w.channels["q"].deliveries[0].from, None);
}

#[test]
fn private_globals_differ_per_process_and_fork_copies_them() {
    let mut s = Script::default();
    s.at(
        "runner",
        resource(ResourceKind::Global, "num", Some(Value::Int(100)), None),
    )
    .at("main", hello(Some("runner")))
    .at("main", rw(true, "num", 5, true))
    .at("main", spawn("main.1"))
    .at("main.1", rw(true, "num", 6, true))
    .at("main", spawn("main.2"));
    let w = s.world();
    assert_eq!(w.private_value("main", "num"), Some(&Value::Int(5)));
    assert_eq!(w.private_value("main.1", "num"), Some(&Value::Int(6)));
    assert_eq!(w.private_value("main.2", "num"), Some(&Value::Int(5)));
    assert_eq!(w.private_value("runner", "num"), Some(&Value::Int(100)));
    assert!(!w.values.contains_key("num"));
}

#[test]
fn a_lost_update_is_what_the_writer_reports_not_a_guess_from_the_order() {
    let mut s = family();
    s.at(
        "runner",
        resource(ResourceKind::Value, "v", Some(Value::Int(0)), None),
    )
    // Read, read, write, write in the order events arrive: without the
    // writer's `race` event this is no lost update (the events' order is
    // not the memory's).
    .at("main.1", rw(false, "v", 0, false))
    .at("main.2", rw(false, "v", 0, false))
    .at("main.1", rw(true, "v", 1, false))
    .at("main.2", rw(true, "v", 1, false));
    assert!(s.world().values["v"].lost_updates.is_empty());
    // The writer found 1 where it had read 0: it erased one update.
    s.at(
        "main.2",
        Body::Race {
            name: "v".into(),
            read: Value::Int(0),
            replaced: Value::Int(1),
            written: Value::Int(1),
            lost: Value::Int(1),
        },
    );
    let w = s.world();
    let v = &w.values["v"];
    assert_eq!(v.current, Value::Int(1));
    assert_eq!((v.reads, v.writes), (2, 2));
    assert_eq!(v.lost_updates.len(), 1);
    let lost = &v.lost_updates[0];
    assert_eq!(lost.proc_id, "main.2");
    assert_eq!(
        (&lost.read, &lost.replaced),
        (&Value::Int(0), &Value::Int(1))
    );
    assert_eq!(lost.lost, Value::Int(1));
    // Marked at main.2's write, where the timeline and the stage show it.
    let write_t = v.writes().last().map(|a| a.t_ns);
    assert_eq!(Some(lost.t_ns), write_t);
}

#[test]
fn the_runners_last_read_is_the_final_value_whatever_the_write_order() {
    let mut s = family();
    s.at(
        "runner",
        resource(ResourceKind::Value, "v", Some(Value::Int(0)), None),
    )
    // Two writes stamped in one order, landed in memory in the other.
    .at("main.2", rw(true, "v", 2, false))
    .at("main.1", rw(true, "v", 1, false));
    assert_eq!(s.world().values["v"].current, Value::Int(1));
    s.at("runner", rw(false, "v", 2, false));
    assert_eq!(s.world().values["v"].current, Value::Int(2));
}

#[test]
fn array_element_writes_update_the_array() {
    let mut s = family();
    let list = Value::List(vec![Value::Int(1), Value::Int(2)]);
    s.at(
        "runner",
        resource(ResourceKind::Array, "arr", Some(list), None),
    )
    .at("main.1", rw(true, "arr[1]", 4, false))
    .at("main.1", rw(true, "arr[9]", 4, false));
    let w = s.world();
    assert_eq!(w.values["arr"].current.to_string(), "[1, 4]");
    assert!(w.values["arr"].is_array);
}

#[test]
fn sleep_block_and_stop_states() {
    let mut s = family();
    s.at("main.1", Body::Sleep { duration_ms: 2.0 });
    let w = s.world();
    assert_eq!(w.processes["main.1"].state, ProcState::Sleeping);
    assert_eq!(
        w.processes["main.1"].sleep_until_t_ns,
        Some(s.t_ns + 2_000_000)
    );

    let sig = |signal: &str| Body::Signal {
        target: "main.1".into(),
        target_pid: 777,
        signal: signal.into(),
    };
    s.at("main", sig("SIGSTOP")).at("main.1", Body::Wake {});
    assert_eq!(s.world().processes["main.1"].state, ProcState::Stopped);
    s.at("main", sig("SIGCONT"));
    assert_eq!(s.world().processes["main.1"].state, ProcState::Running);

    s.at(
        "main",
        Body::Block {
            on: "join main.1".into(),
        },
    );
    assert_eq!(
        s.world().processes["main"].state.to_string(),
        "blocked on join main.1"
    );
    s.at(
        "main",
        Body::Unblock {
            on: "join main.1".into(),
        },
    );
    assert_eq!(s.world().processes["main"].state, ProcState::Running);
}

#[test]
fn output_goes_per_process_and_merged_in_arrival_order() {
    let mut s = family();
    s.at("main.1", out("1|"))
        .at("main.2", out("2|"))
        .at("main.1", out("3|"));
    let w = s.world();
    assert_eq!(w.merged_output.text(), "1|2|3|");
    assert_eq!(w.processes["main.1"].output.text(), "1|3|");
}

#[test]
fn sends_whose_receive_was_lost_do_not_pile_up() {
    let mut s = family();
    for i in 0..IN_FLIGHT_KEPT * 3 {
        s.at(
            "main",
            Body::Put {
                channel: "q".into(),
                msg: format!("m{i}"),
                value: Value::Int(1),
            },
        );
    }
    let w = s.world();
    let q = &w.channels["q"];
    assert!(q.depth() <= IN_FLIGHT_KEPT, "{}", q.depth());
    assert_eq!(q.sent_total, (IN_FLIGHT_KEPT * 3) as u64, "all counted");
    let newest = format!("m{}", IN_FLIGHT_KEPT * 3 - 1);
    assert_eq!(
        q.in_flight.last().map(|m| m.msg.as_str()),
        Some(newest.as_str())
    );
}

#[test]
fn long_lines_are_bounded_by_bytes_too() {
    let mut s = family();
    let line = format!("{}\n", "y".repeat(1999));
    for _ in 0..1000 {
        s.at("main", out(&line));
    }
    let w = s.world();
    let own = w.processes["main"].output.text().len();
    assert!(own <= PROCESS_OUTPUT_BYTES_KEPT, "{own} bytes kept");
    assert!(own > PROCESS_OUTPUT_BYTES_KEPT - 2000, "as much as fits");
    let merged = w.merged_output.text().len();
    assert!(merged <= MERGED_OUTPUT_BYTES_KEPT, "{merged} bytes kept");
    assert_eq!(
        w.merged_output.trimmed as usize + w.merged_output.chunks.len(),
        1000,
        "every chunk kept or counted"
    );
    assert!(w.approx_bytes() < 1 << 20, "{} bytes", w.approx_bytes());
}

#[test]
fn output_is_bounded_and_counts_what_it_dropped() {
    let mut s = family();
    for _ in 0..OUTPUT_CHUNKS_KEPT + 5 {
        s.at("main", out("x\n"));
    }
    let w = s.world();
    assert_eq!(w.merged_output.chunks.len(), OUTPUT_CHUNKS_KEPT);
    assert_eq!(w.merged_output.trimmed, 5);
    assert_eq!(w.processes["main"].output.trimmed, 5);
}

#[test]
fn tasks_captions_samples_lines_and_errors() {
    let mut s = family();
    s.at(
        "runner",
        resource(ResourceKind::Pool, "pool", None, Some(2)),
    )
    .at(
        "main.1",
        Body::TaskStart {
            pool: "pool".into(),
            task: 3,
            func: "square".into(),
        },
    );
    if let Some(e) = s.events.last_mut() {
        e.line = Some(12);
    }
    s.at(
        "main",
        Body::Narrate {
            text: "look".into(),
            pause: false,
        },
    )
    .at(
        "main.1",
        Body::Sample {
            cpu_percent: 50.0,
            rss_bytes: 4096,
        },
    )
    .at(
        "main.2",
        Body::Error {
            message: "bad".into(),
        },
    );
    let w = s.world();
    let p = &w.processes["main.1"];
    assert_eq!(p.task.as_ref().map(|t| t.func.as_str()), Some("square"));
    assert_eq!((p.line, p.rss_bytes), (Some(12), Some(4096)));
    assert_eq!(w.caption.as_deref(), Some("look"));
    assert_eq!(w.errors[0].message, "bad");
    assert_eq!(w.pools["pool"].size, 2);

    s.at(
        "main.1",
        Body::TaskDone {
            pool: "pool".into(),
            task: 3,
            value: Value::Int(9),
        },
    );
    let w = s.world();
    assert_eq!(w.processes["main.1"].task, None);
    assert_eq!(w.pools["pool"].results.get(&3), Some(&Value::Int(9)));
}

#[test]
fn odd_sequences_are_tolerated() {
    let mut s = Script::default();
    s.at("ghost", reaped("nobody"))
        .at("ghost", exit(1))
        .at("x", lock("release", "never"))
        .at(
            "x",
            Body::Adopted {
                by: "x".into(),
                new_ppid: 1,
            },
        )
        .at(
            "a",
            Body::Adopted {
                by: "b".into(),
                new_ppid: 1,
            },
        )
        .at(
            "b",
            Body::Adopted {
                by: "a".into(),
                new_ppid: 1,
            },
        )
        .at(
            "y",
            Body::Signal {
                target: "nobody".into(),
                target_pid: 0,
                signal: "SIGSTOP".into(),
            },
        )
        .at(
            "y",
            Body::Sleep {
                duration_ms: f64::NAN,
            },
        )
        .at("y", spawn("y"))
        .at("z", rw(true, "[", 1, false));
    let w = s.world();
    assert_eq!(w.processes["ghost"].state, ProcState::Reaped);
    assert_eq!(w.processes_by_tree().len(), w.processes.len());
}

/// Tiny deterministic generator so the test needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn random_event_soup_never_panics_and_keeps_invariants() {
    let procs = ["runner", "main", "main.1", "main.2", "pool.w1"];
    let names = ["L", "q", "p", "v", "arr[0]"];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut world = World::new();
    let mut log = EventLog::new();
    for i in 0..20_000_u64 {
        let who = procs[rng.next(procs.len())];
        let other = procs[rng.next(procs.len())].to_string();
        let name = names[rng.next(names.len())].to_string();
        let msg = rng.next(4).to_string();
        let value = Value::Int(rng.next(10) as i64);
        let body = match rng.next(22) {
            0 => hello(Some(&other)),
            1 => spawn(&other),
            2 => exit(0),
            3 => reaped(&other),
            4 => Body::Adopted {
                by: other,
                new_ppid: 1,
            },
            5 => out("x"),
            6 => Body::Send {
                channel: name,
                end: "a".into(),
                msg,
                value,
            },
            7 => Body::Recv {
                channel: name,
                end: "b".into(),
                msg,
                value,
            },
            8 => Body::Put {
                channel: name,
                msg,
                value,
            },
            9 => Body::Get {
                channel: name,
                msg,
                value,
            },
            10 => lock("wait", &name),
            11 => lock("acquire", &name),
            12 => lock("release", &name),
            13 => Body::Read {
                name,
                value,
                private: rng.next(2) == 0,
            },
            14 => Body::Write {
                name,
                value,
                private: rng.next(2) == 0,
            },
            15 => Body::Signal {
                target: other,
                target_pid: 0,
                signal: ["SIGSTOP", "SIGCONT", "SIGKILL"][rng.next(3)].into(),
            },
            16 => Body::Sleep {
                duration_ms: rng.next(100) as f64,
            },
            17 => Body::Wake {},
            18 => Body::Block { on: name },
            19 => Body::Unblock { on: name },
            20 => resource(
                [
                    ResourceKind::Value,
                    ResourceKind::Array,
                    ResourceKind::Lock,
                    ResourceKind::Pipe,
                    ResourceKind::Queue,
                    ResourceKind::Pool,
                    ResourceKind::Global,
                ][rng.next(7)],
                &name,
                Some(value),
                Some(rng.next(3) as u32),
            ),
            _ => Body::TaskStart {
                pool: name,
                task: 1,
                func: "f".into(),
            },
        };
        let event = Event {
            // Mostly increasing, sometimes late: events cross between sockets.
            t_ns: (i * 10).saturating_sub(rng.next(3) as u64 * 5),
            seq: i,
            proc_id: who.into(),
            pid: rng.next(5) as i32,
            line: Some(rng.next(30) as u32),
            thread: None,
            tid: None,
            body,
        };
        world.apply(&event);
        log.push(event);
    }
    for lock in world.locks.values() {
        if let Some(holder) = &lock.holder {
            assert!(!lock.waiters.contains(holder), "{lock:?}");
        }
    }
    let rows = world.processes_by_tree();
    assert_eq!(rows.len(), world.processes.len());
    assert_eq!(world.events_applied, 20_000);
    // The same events give the same world: replay is deterministic.
    assert_eq!(log.world_at(log.len()), world);
}

fn buffered(text: &str, inherited: bool) -> Body {
    Body::Buffered {
        text: text.into(),
        inherited,
    }
}

#[test]
fn the_stdout_buffer_holds_what_is_printed_until_a_flush() {
    let mut s = family();
    s.at("main", buffered("main pid 1\n", false));
    let w = s.world();
    let b = &w.processes["main"].stdout_buffer;
    assert_eq!((b.bytes, b.text.as_str()), (11, "main pid 1\n"));
    assert_eq!(b.shown(40), r"'main pid 1\n'");
    assert!(!b.inherited);

    // A child forked now holds a copy, and says so.
    s.at("main.1", buffered("main pid 1\n", true));
    let w = s.world();
    assert!(w.processes["main.1"].stdout_buffer.inherited);

    // Part of it written: what is left stays.
    s.at("main", buffered("x", false))
        .at("main", Body::Flush { bytes: 11 })
        .at("main", out("main pid 1\n"));
    let w = s.world();
    assert_eq!(w.processes["main"].stdout_buffer.text, "x");
    assert_eq!(w.processes["main"].stdout_buffer.shown(3), "'x'");
    assert_eq!(w.processes["main"].stdout_buffer.shown(2), "'…'");

    // A child killed with its buffer unwritten keeps it: what it lost.
    s.at(
        "main.1",
        Body::Exit {
            code: None,
            signal: Some("SIGTERM".into()),
        },
    );
    let w = s.world();
    assert!(!w.processes["main.1"].stdout_buffer.is_empty());

    // exec replaces the memory the buffer is in.
    s.at("main.2", buffered("y", true)).at(
        "main.2",
        Body::Exec {
            program: "ls".into(),
            args: vec![],
        },
    );
    assert!(s.world().processes["main.2"].stdout_buffer.is_empty());
}

#[test]
fn a_forged_flood_of_buffered_text_is_capped() {
    let mut s = family();
    let big = "é".repeat(STDOUT_BUFFER_BYTES_KEPT);
    s.at("main", buffered(&big, false));
    let w = s.world();
    let b = &w.processes["main"].stdout_buffer;
    assert!(b.text.len() <= STDOUT_BUFFER_BYTES_KEPT);
    assert_eq!(b.bytes, big.len() as u64);
    s.at("main", Body::Flush { bytes: u64::MAX });
    assert!(s.world().processes["main"].stdout_buffer.is_empty());
}

#[test]
fn threads_are_tracked_inside_their_process_and_hold_locks_themselves() {
    let mut s = Script::default();
    s.at("main", hello(None));
    let thread = |s: &mut Script, name: &str, tid: i32, body: Body| {
        s.at("main", body);
        let e = s.events.last_mut().expect("just pushed");
        e.thread = Some(name.into());
        e.tid = Some(tid);
    };
    thread(
        &mut s,
        "main.t1",
        11,
        Body::ThreadStart {
            role: "work".into(),
            daemon: false,
        },
    );
    thread(
        &mut s,
        "main.t2",
        12,
        Body::ThreadStart {
            role: "work".into(),
            daemon: false,
        },
    );
    thread(
        &mut s,
        "main.t1",
        11,
        Body::LockAcquire { lock: "l".into() },
    );
    thread(&mut s, "main.t2", 12, Body::LockWait { lock: "l".into() });
    thread(&mut s, "main.t1", 11, Body::Sleep { duration_ms: 5.0 });
    let w = s.world();
    let p = w.process("main").expect("main");
    assert_eq!(p.threads.len(), 2);
    assert_eq!(p.thread("main.t1").map(|t| t.tid), Some(11));
    assert_eq!(
        p.thread("main.t1").map(|t| t.state.clone()),
        Some(ProcState::Sleeping)
    );
    assert!(matches!(
        p.thread("main.t2").map(|t| &t.state),
        Some(ProcState::Blocked(_))
    ));
    // The process itself (its main thread) runs on.
    assert_eq!(p.state, ProcState::Running);
    assert_eq!(w.locks["l"].holder.as_deref(), Some("main.t1"));
    assert_eq!(w.locks["l"].waiters, vec!["main.t2".to_string()]);
    // A thread waiting for a lock its sibling holds is no deadlock.
    assert_eq!(crate::lab::deadlock::in_world(&w), None);
    thread(&mut s, "main.t1", 11, Body::ThreadEnd { error: None });
    let w = s.world();
    assert!(
        w.process("main")
            .and_then(|p| p.thread("main.t1"))
            .is_some_and(|t| t.done)
    );
}

/// fork-print: a child that ended before its parent was a zombie when the
/// parent died. The kernel hands it to the runner too, but it never
/// outlived its parent: no ORPHAN.
#[test]
fn a_child_that_ended_before_its_parent_is_no_orphan() {
    let mut s = family();
    s.at("main.1", exit(0))
        .at("main", exit(0))
        .at("main", reaped("runner"))
        .at("main.1", reaped("runner"));
    let w = s.world();
    let p = &w.processes["main.1"];
    assert!(!p.orphaned && !p.adopted, "{p:?}");
    assert_eq!(p.original_parent.as_deref(), Some("main"));
}

/// A child alive when its parent dies is an orphan; reaped by the runner,
/// it was adopted by it even if no `adopted` event came.
#[test]
fn an_orphan_reaped_by_the_runner_was_adopted_by_it() {
    let mut s = family();
    s.at("main", exit(0))
        .at("main", reaped("runner"))
        .at("main.1", exit(0))
        .at("main.1", reaped("runner"));
    let w = s.world();
    let p = &w.processes["main.1"];
    assert!(p.orphaned && p.adopted, "{p:?}");
    assert_eq!(p.parent.as_deref(), Some("runner"));
    assert_eq!(p.original_parent.as_deref(), Some("main"));
}

fn race(read: i64, replaced: i64, written: i64) -> Body {
    Body::Race {
        name: "counter".into(),
        read: Value::Int(read),
        replaced: Value::Int(replaced),
        written: Value::Int(written),
        lost: Value::Int(replaced - read),
    }
}

/// unlocked-counter: a write that found a smaller value than it read (the
/// other worker's stale write) puts an update back. The count of lost
/// updates is adds − final, not the number of `race` events.
#[test]
fn lost_updates_count_updates_not_race_events() {
    let mut s = family();
    s.at(
        "runner",
        resource(ResourceKind::Value, "counter", Some(Value::Int(5)), None),
    );
    // main.2 adds twice (6, 7); main.1, which read 5, writes 6 over 7
    // (erases 2); main.2, which read 7, writes 8 over 6 (puts 1 back).
    // 4 adds from 5 end at 8: 1 update lost, in 2 race events.
    s.at("main.1", rw(false, "counter", 5, false))
        .at("main.2", rw(false, "counter", 5, false))
        .at("main.2", rw(true, "counter", 6, false))
        .at("main.2", rw(false, "counter", 6, false))
        .at("main.2", rw(true, "counter", 7, false))
        .at("main.2", rw(false, "counter", 7, false))
        .at("main.1", rw(true, "counter", 6, false))
        .at("main.1", race(5, 7, 6));
    assert_eq!(s.world().values["counter"].updates_lost(), 2);
    s.at("main.2", rw(true, "counter", 8, false))
        .at("main.2", race(7, 6, 8));
    let w = s.world();
    let v = &w.values["counter"];
    assert_eq!(v.current, Value::Int(8));
    assert_eq!(v.lost_updates.len(), 2, "two race events");
    assert_eq!(v.updates_lost(), 1, "4 adds - (8 - 5)");
    assert_eq!(v.updates_lost_by("main.1"), (2, 0));
    assert_eq!(v.updates_lost_by("main.2"), (0, 1));
    assert_eq!(v.last_erasing().map(|l| l.proc_id.as_str()), Some("main.1"));
}

/// pool-async: "6 of 10 tasks done" counts the tasks queued, not only the
/// ones the workers took so far.
#[test]
fn a_pool_counts_its_tasks_out_of_those_queued() {
    let mut s = family();
    s.at("main", resource(ResourceKind::Pool, "po", None, Some(3)));
    for task in 0..10 {
        s.at(
            "main",
            Body::Put {
                channel: "po.tasks".into(),
                msg: format!("po:task{task}"),
                value: Value::Str("worker(i)".into()),
            },
        );
    }
    for task in 0..3 {
        s.at(
            "main.1",
            Body::TaskStart {
                pool: "po".into(),
                task,
                func: "worker".into(),
            },
        );
    }
    s.at(
        "main.1",
        Body::TaskDone {
            pool: "po".into(),
            task: 0,
            value: Value::None,
        },
    );
    let w = s.world();
    let p = &w.pools["po"];
    assert_eq!((p.tasks_queued, p.tasks_started, p.tasks_done), (10, 3, 1));
    assert_eq!(p.progress(), "1 of 10 tasks done");
    // A pool whose queuing is not told (a traced program's): the tasks taken.
    let mut s = family();
    s.at("main", resource(ResourceKind::Pool, "po", None, Some(3)))
        .at(
            "main.1",
            Body::TaskStart {
                pool: "po".into(),
                task: 0,
                func: "f".into(),
            },
        );
    assert_eq!(s.world().pools["po"].progress(), "0 done of 1 taken");
}

/// `close` puts one stop per worker on the tasks pipe: they are in the
/// pipe (a gated run's scheduler lets a worker take one) but are no task.
#[test]
fn a_pools_stops_are_in_its_tasks_pipe_but_are_no_task() {
    let mut s = family();
    s.at("main", resource(ResourceKind::Pool, "po", None, Some(2)))
        .at(
            "main",
            Body::Put {
                channel: "po.tasks".into(),
                msg: "po:task0".into(),
                value: Value::Str("f(1)".into()),
            },
        );
    for k in 1..=2 {
        s.at(
            "main",
            Body::Put {
                channel: "po.tasks".into(),
                msg: format!("po:stop{k}"),
                value: Value::Str("stop".into()),
            },
        );
    }
    let w = s.world();
    assert_eq!(w.pools["po"].tasks_queued, 1);
    assert_eq!(w.channels["po.tasks"].depth(), 3);
    assert!(crate::lab::can_wake(&w, "main.1", "pool-tasks:po"));
    s.at(
        "main.1",
        Body::Get {
            channel: "po.tasks".into(),
            msg: "po:stop1".into(),
            value: Value::Str("stop".into()),
        },
    );
    assert_eq!(s.world().channels["po.tasks"].depth(), 2);
}
