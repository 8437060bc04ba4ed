//! How one event reads in the text log.

use crate::protocol::{Body, Event, Stream};

/// What happened, in a few words (without time and process).
pub fn describe(e: &Event) -> String {
    match &e.body {
        Body::Hello {
            role, parent, ppid, ..
        } => match parent {
            Some(p) => format!("starts: role {role}, child of {p} (ppid {ppid})"),
            None => format!("starts: role {role}"),
        },
        Body::Resource {
            res,
            name,
            value,
            size,
            ends,
            ..
        } => {
            let mut s = format!("sets up {res:?} {name}").to_lowercase();
            if let Some(v) = value {
                s.push_str(&format!(" = {}", v.repr()));
            }
            if let Some(n) = size {
                s.push_str(&format!(" (size {n})"));
            }
            if !ends.is_empty() {
                s.push_str(&format!(" (ends {})", ends.join(", ")));
            }
            s
        }
        Body::Spawn {
            child,
            child_pid,
            role,
            daemon,
        } => format!(
            "forks {child} (pid {child_pid}, role {role}{})",
            if *daemon { ", daemon" } else { "" }
        ),
        Body::ThreadStart { role, daemon } => format!(
            "starts thread (tid {}, role {role}{})",
            e.tid.unwrap_or(0),
            if *daemon { ", daemon" } else { "" }
        ),
        Body::ThreadEnd { error: None } => "thread ends".into(),
        Body::ThreadEnd { error: Some(m) } => format!("thread ends with an exception: {m}"),
        Body::ThreadJoin { joined } => format!("joins thread {joined}: it has ended"),
        Body::Exec { program, args } => format!("execs {program} {}", args.join(" ")),
        Body::Exit { code, signal } => match (code, signal) {
            (_, Some(s)) => format!("dies: killed by {s} (a zombie until reaped)"),
            (Some(c), None) => format!("exits with code {c} (a zombie until reaped)"),
            _ => "exits".into(),
        },
        Body::Reaped { by, by_pid, .. } => format!("is reaped by {by} (pid {by_pid}): gone"),
        Body::Adopted { by, new_ppid } => {
            format!("is orphaned: adopted by {by} (new ppid {new_ppid})")
        }
        Body::Output { stream, text } => {
            let bar = if *stream == Stream::Stderr { "!" } else { "|" };
            format!("{bar} {}", text.strip_suffix('\n').unwrap_or(text))
        }
        Body::Buffered { text, inherited } => {
            if *inherited {
                format!(
                    "holds {text:?} in its stdout buffer: fork copied it from its parent's, unwritten"
                )
            } else {
                format!("prints {text:?} into its stdout buffer")
            }
        }
        Body::Flush { bytes } => format!("flushes its stdout buffer: {bytes} bytes written"),
        Body::Send {
            channel,
            end,
            value,
            ..
        } => format!("sends {} into pipe {channel} ({end})", value.repr()),
        Body::Recv {
            channel,
            end,
            value,
            ..
        } => format!("receives {} from pipe {channel} ({end})", value.repr()),
        Body::Poll { end, ready, .. } => format!("polls {end}: {ready}"),
        Body::Put { channel, value, .. } => format!("puts {} into {channel}", value.repr()),
        Body::Get { channel, value, .. } => format!("gets {} from {channel}", value.repr()),
        Body::LockWait { lock } => format!("waits for lock {lock}"),
        Body::LockAcquire { lock } => format!("holds lock {lock}"),
        Body::LockRelease { lock } => format!("releases lock {lock}"),
        Body::Read {
            name,
            value,
            private,
        } => format!(
            "reads {name} = {}{}",
            value.repr(),
            if *private { " (its own copy)" } else { "" }
        ),
        Body::Write {
            name,
            value,
            private,
        } => format!(
            "writes {name} = {}{}",
            value.repr(),
            if *private { " (its own copy)" } else { "" }
        ),
        Body::TaskStart { pool, task, func } => format!("starts task {task} of {pool}: {func}"),
        Body::Callback {
            pool,
            task,
            func,
            error,
        } => {
            let which = if *error { "error callback" } else { "callback" };
            format!("runs {which} {func} for task {task} of {pool}")
        }
        Body::Named { name } => format!("is {name} (the program's name for it)"),
        Body::TaskDone { pool, task, value } => {
            format!("finishes task {task} of {pool}: {}", value.repr())
        }
        Body::Signal {
            target,
            target_pid,
            signal,
        } => format!("sends {signal} to {target} (pid {target_pid})"),
        Body::Sleep { duration_ms } => format!("sleeps {duration_ms:.0} ms"),
        Body::Wake {} => "wakes up".into(),
        Body::Block { on } => format!("blocks: {on}"),
        Body::Unblock { on } => format!("goes on after: {on}"),
        Body::Narrate { text, pause } => {
            if *pause {
                format!("» {text} (a replay pauses here)")
            } else {
                format!("» {text}")
            }
        }
        Body::Sample {
            cpu_percent,
            rss_bytes,
        } => format!("cpu {cpu_percent:.0}%, rss {} KiB", rss_bytes / 1024),
        Body::Pending {
            action,
            retry,
            waits_for,
            ..
        } => match (retry, waits_for) {
            (true, Some(on)) => format!("next: {action} (tried: {on} is not available)"),
            _ => format!("next: {action}"),
        },
        Body::Race {
            name,
            read,
            replaced,
            written,
            lost,
        } => match crate::model::race_updates(read, written, lost) {
            n if n > 0 => format!(
                "LOST UPDATE: wrote {name} = {} over {} (it had read {}): {n} update{} lost",
                written.repr(),
                replaced.repr(),
                read.repr(),
                if n == 1 { "" } else { "s" }
            ),
            n => format!(
                "wrote {name} = {} over {} (it had read {}): over another's stale write, {} update{} back",
                written.repr(),
                replaced.repr(),
                read.repr(),
                -n,
                if n == -1 { "" } else { "s" }
            ),
        },
        Body::Deadlock { cycle } => format!("DEADLOCK: {cycle}"),
        Body::Go {} => "goes".into(),
        Body::Free {} => "runs free (takes no steps of the schedule)".into(),
        Body::Error { message } => format!("error: {message}"),
    }
}

/// One log line: time since the start, logical id, pid, what happened. A
/// thread's event names the thread (`main.t1`) and its tid instead.
pub fn line(e: &Event, t0_ns: u64) -> String {
    let t = e.t_ns.saturating_sub(t0_ns) as f64 / 1e9;
    match (&e.thread, e.tid) {
        (Some(thread), Some(tid)) => format!("{t:8.3}s  {thread:<10} {tid:>7}  {}", describe(e)),
        _ => format!("{t:8.3}s  {:<10} {:>7}  {}", e.proc_id, e.pid, describe(e)),
    }
}
