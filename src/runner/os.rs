//! The few places the runner talks to the kernel directly: fork, packet
//! pipes that keep message boundaries (queues, pools), and blocking reads
//! and writes of one message. `Pipe()` ends are in `pipes.rs`.

use super::RunError;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::unistd::{ForkResult, fork, pipe2, read, write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest message a pipe or queue carries in one piece (a pipe's atomic
/// write size).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Forks the calling process.
///
/// Only the runner's processes call this, and they are single-threaded
/// (the runner is started with `Command` by the app and never creates a
/// thread), so the child gets a consistent copy: no lock can be held by a
/// thread that does not exist in the child. The GUI/CLI process never calls it.
pub fn fork_process() -> Result<ForkResult, RunError> {
    // SAFETY: see above: the caller is single-threaded, so after fork the
    // child may allocate and run arbitrary code.
    unsafe { fork() }.map_err(|e| RunError(format!("fork failed: {e}")))
}

/// Moves the relocated read-only data of this image (every loaded
/// object's `PT_GNU_RELRO` range: vtables, string tables, the GOT; 404 kB
/// for forkscope) from private anonymous copies into one memory file
/// mapped privately and read-only at the same addresses, with the same
/// bytes.
///
/// Why: a position-independent image relocates that data at start, so
/// its pages are anonymous, and every `fork` copies their page-table
/// entries (and the child's end tears them down again), ~100 pages for
/// each process a scenario starts. A file mapping that was never written
/// is not copied by `fork`: a child maps the pages it reads when it reads
/// them. The mapping is private, as the loader's was, so `mprotect` can
/// still make it writable (glibc does, e.g. when `dlopen` loads a library
/// that wants an executable stack) and a write then copies the page for
/// this process only, as before; the file itself is sealed against
/// writes. Every process sees the same bytes as before. Best effort: a
/// range that is not moved stays as it was (`mremap` replaces the old
/// range in one call; only an allocation failing inside the kernel after
/// it unmapped the old range could leave a hole, as with any `mremap`).
/// Call only while single-threaded (the runner always is), before forking.
/// Returns the number of bytes moved.
pub fn share_relro() -> usize {
    let ranges = relro_ranges();
    let total: usize = ranges.iter().map(|r| r.1).sum();
    if total == 0 {
        return 0;
    }
    // SAFETY: a plain system call with a valid C string.
    let raw = unsafe {
        libc::memfd_create(
            c"forkscope-relro".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return 0;
    }
    // SAFETY: `raw` is a descriptor we just created and own alone.
    let file = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    for &(start, len) in &ranges {
        // SAFETY: the range is mapped and readable: the dynamic loader
        // made it read-only (not unmapped) after relocating it, and this
        // process is single-threaded, so nothing changes it meanwhile.
        let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
        if write_all(&file, bytes).is_err() {
            return 0;
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor.
    if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) } != 0 {
        return 0;
    }
    let mut moved = 0;
    let mut offset = 0usize;
    for (start, len) in ranges {
        let Ok(file_offset) = libc::off_t::try_from(offset) else {
            break;
        };
        offset += len;
        // SAFETY: a new mapping at an address the kernel picks: it
        // overlaps nothing of ours.
        let fresh = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                raw,
                file_offset,
            )
        };
        if fresh == libc::MAP_FAILED {
            continue;
        }
        // SAFETY: both ranges are mapped and readable, `len` bytes long.
        let same = unsafe { libc::memcmp(fresh, start as *const libc::c_void, len) } == 0;
        // SAFETY: `mremap` puts the fresh mapping in the place of the
        // range in one call (see above for its one failure mode). The
        // bytes there are the same (just compared) and read-only in both,
        // so code reading them before and after sees no difference.
        let done = same
            && unsafe {
                libc::mremap(
                    fresh,
                    len,
                    len,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    start as *mut libc::c_void,
                )
            } != libc::MAP_FAILED;
        if done {
            moved += len;
        } else {
            // SAFETY: the fresh mapping is ours and nothing points into it.
            unsafe { libc::munmap(fresh, len) };
        }
    }
    moved
}

/// The lowest address of the main stack's mapping when
/// [`share_relro`] read the process's mappings (0: unknown). The stack
/// only grows down from there, so `[STACK_LOW, sp)` is stack.
static STACK_LOW: AtomicUsize = AtomicUsize::new(0);
/// The end of that mapping: a caller whose frame is not between the two
/// is not on the main stack (a thread), and nothing is trimmed.
static STACK_HIGH: AtomicUsize = AtomicUsize::new(0);

/// Gives back the stack pages well below the caller's frame (dirtied by
/// deep calls before, such as parsing the scenario): nothing lives below
/// the stack pointer, and each dirty page there is a page table entry
/// that every later `fork` copies and every child tears down. A later
/// deep call finds fresh zero pages there, as the kernel gives a growing
/// stack. Call while single-threaded, after [`share_relro`].
#[inline(never)]
pub fn trim_stack() {
    let (low, high) = (
        STACK_LOW.load(Ordering::Relaxed),
        STACK_HIGH.load(Ordering::Relaxed),
    );
    let here = 0u8;
    let sp = std::hint::black_box(&raw const here) as usize;
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // Two pages below this frame's page stay, for the call made from
    // here (the madvise wrapper: a return address and a few words). A
    // signal handler's frame, written below the stack pointer after the
    // call, finds fresh zero pages like any growing stack.
    let top = (sp / page * page).saturating_sub(2 * page);
    if low == 0 || sp >= high || top <= low {
        return;
    }
    // SAFETY: `[low, top)` is part of the main stack's mapping (see
    // STACK_LOW) and lies entirely below every live frame of this
    // single-threaded process: no data there is used again before it is
    // written anew, and MADV_DONTNEED makes it read as zeros meanwhile.
    unsafe { libc::madvise(low as *mut libc::c_void, top - low, libc::MADV_DONTNEED) };
}

/// The page-aligned `PT_GNU_RELRO` ranges of the loaded objects (start
/// address, length), as the dynamic loader protected them: from the
/// segment's first page to the last page it fills entirely.
fn relro_ranges() -> Vec<(usize, usize)> {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let mut found: Vec<(usize, usize)> = Vec::new();
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` for the call's
        // duration, and `data` is the `Vec` passed below (nothing else
        // refers to it meanwhile).
        let (info, found) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        for h in headers.iter().filter(|h| h.p_type == libc::PT_GNU_RELRO) {
            let (Ok(vaddr), Ok(memsz)) = (usize::try_from(h.p_vaddr), usize::try_from(h.p_memsz))
            else {
                continue;
            };
            let begin = (info.dlpi_addr as usize).wrapping_add(vaddr);
            found.push((begin, begin.wrapping_add(memsz)));
        }
        0
    }
    // SAFETY: `each` only reads what the loader gives it and pushes to
    // `found`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut found).cast()) };
    // Only what is private and read-only now (as the loader left it).
    let read_only = read_only_private_maps();
    found
        .into_iter()
        .filter_map(|(begin, end)| {
            let start = begin / page * page;
            let stop = end / page * page;
            (stop > start && covered(&read_only, start, stop)).then_some((start, stop - start))
        })
        .collect()
}

/// This process's private read-only mappings (`r--p` in
/// `/proc/self/maps`), in address order.
fn read_only_private_maps() -> Vec<(usize, usize)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            if line.ends_with("[stack]") {
                let (low, high) = range.split_once('-')?;
                STACK_LOW.store(usize::from_str_radix(low, 16).ok()?, Ordering::Relaxed);
                STACK_HIGH.store(usize::from_str_radix(high, 16).ok()?, Ordering::Relaxed);
            }
            if perms != "r--p" {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// Is all of `[start, stop)` inside the mappings `maps` (sorted, maybe
/// adjacent)?
fn covered(maps: &[(usize, usize)], start: usize, stop: usize) -> bool {
    let mut at = start;
    for &(a, b) in maps {
        if a <= at && at < b {
            at = b;
            if at >= stop {
                return true;
            }
        }
    }
    false
}

/// A kernel pipe in packet mode (`O_DIRECT`): every write of up to 4096
/// bytes is read back as one message, even with several readers. The pipe
/// is enlarged so that a burst of tasks or results does not block.
pub fn packet_pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    let (r, w) = pipe2(OFlag::O_DIRECT | OFlag::O_CLOEXEC)
        .map_err(|e| RunError(format!("cannot create a pipe: {e}")))?;
    // Best effort: a smaller pipe still works, it just blocks sooner.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(1 << 20));
    Ok((r, w))
}

/// A duplex connection that keeps message boundaries (`SOCK_SEQPACKET`),
/// for forkscope's own requests (the forkserver's).
pub fn duplex_pair() -> Result<(OwnedFd, OwnedFd), RunError> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| RunError(format!("cannot create a socket pair: {e}")))
}

/// Is there something to read (or has the other side gone) within
/// `timeout_ms` (0 = just look)?
pub fn readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout_ms.max(0)).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut fds, timeout) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Waits up to `timeout_ms` for one of `fds` to be readable (or at its
/// end); the index of the first that is.
pub fn first_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> Option<usize> {
    let mut polled: Vec<PollFd> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = PollTimeout::try_from(timeout_ms.max(0)).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut polled, timeout) {
            Ok(0) => return None,
            Ok(_) => return polled.iter().position(|p| p.any().unwrap_or(false)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Writes one message in one `write` (so it stays whole).
pub fn write_message(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), RunError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(RunError(format!(
            "a message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
            bytes.len()
        )));
    }
    loop {
        match write(fd, bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => return Err(RunError(format!("short write ({n} of {})", bytes.len()))),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EPIPE) => {
                return Err(RunError(
                    "BrokenPipeError: nobody reads the other end".into(),
                ));
            }
            Err(e) => return Err(RunError(format!("write failed: {e}"))),
        }
    }
}

/// Reads one message, blocking until one arrives; `None` at end of file.
pub fn read_message(fd: BorrowedFd<'_>) -> Result<Option<Vec<u8>>, RunError> {
    let mut buf = vec![0u8; 65536];
    loop {
        match read(fd, &mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("read failed: {e}"))),
        }
    }
}

/// Writes all of `bytes` to a stream (stdout, a program's stdin).
pub fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> Result<(), RunError> {
    while !bytes.is_empty() {
        match write(fd.as_fd(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("write failed: {e}"))),
        }
    }
    Ok(())
}

/// Reads a stream to its end.
pub fn read_to_end(fd: BorrowedFd<'_>) -> Result<Vec<u8>, RunError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match read(fd, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("read failed: {e}"))),
        }
    }
}

/// Ends this process at once, without running the parent's cleanup that a
/// forked child inherited (Rust has no destructors to run here that matter:
/// output is written unbuffered and the probe writes each event at once).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Points fd 1 at `/dev/null` (or closes it).
pub fn stdout_to_dev_null() {
    match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(null) => {
            let _ = nix::unistd::dup2_stdout(&null);
        }
        Err(_) => {
            // SAFETY: closing fd 1 in a freshly forked child that writes
            // nothing to it (the app's pipe must not stay open here).
            unsafe { libc::close(1) };
        }
    }
}

/// Points fd 0 at `/dev/null` (best effort: if that fails, fd 0 is closed
/// instead, and a program that reads it gets an error rather than a hang).
pub fn stdin_from_dev_null() {
    match std::fs::File::open("/dev/null") {
        Ok(null) => {
            let _ = nix::unistd::dup2_stdin(&null);
        }
        Err(_) => {
            // SAFETY: closing fd 0, which nothing in this process uses (the
            // std handle only turns a read of a closed fd into an error).
            unsafe { libc::close(0) };
        }
    }
}

/// How a parent learns the pid `ps` shows (the host's) for a child it
/// forked, decided once per process image (a fork inherits it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum PidView {
    /// No PID namespace between us and `/proc`: `fork`'s answer is it.
    Same,
    /// Inside forkscope's PID namespace, holding a descriptor of the
    /// namespace `/proc` shows (the runner's own, opened before it made
    /// ours): the kernel translates a pid of ours into it with one
    /// `ioctl` (`NS_GET_PID_IN_PIDNS`, Linux 6.9+), no file opened.
    Outer,
    /// Inside forkscope's PID namespace: a pidfd's `/proc/self/fdinfo`
    /// says (`Pid:`, in `/proc`'s namespace).
    Fdinfo,
    /// Neither works (Linux < 5.3): the child writes it on a pipe.
    Child,
}

/// 0 = not decided yet, else `PidView as u8 + 1`.
static PID_VIEW: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn pid_view() -> PidView {
    use std::sync::atomic::Ordering;
    let views = [
        PidView::Same,
        PidView::Outer,
        PidView::Fdinfo,
        PidView::Child,
    ];
    match PID_VIEW.load(Ordering::Relaxed) {
        n @ 1..=4 => views[usize::from(n - 1)],
        _ => {
            let me = nix::unistd::getpid().as_raw();
            let (host, _) = crate::probe::host_pids();
            let view = if host == me {
                PidView::Same
            } else if outer_pid(me) == Some(host) {
                PidView::Outer
            } else if fdinfo_pid(me) == Some(host) {
                PidView::Fdinfo
            } else {
                PidView::Child
            };
            let n = views.iter().position(|v| *v == view).unwrap_or(3) as u8 + 1;
            PID_VIEW.store(n, Ordering::Relaxed);
            view
        }
    }
}

/// A descriptor of the PID namespace the runner started in (`/proc`'s),
/// kept by the runner core and inherited by every process it forks; -1:
/// none (not in a namespace of ours, or a fresh `exec`ed image: the fd is
/// close-on-exec).
static OUTER_PID_NS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Keeps `ns` (the runner's own PID namespace, opened before it made the
/// run's) for the life of this process and its forks: see
/// [`PidView::Outer`]. Called by the runner core, before it forks anything.
pub fn keep_outer_pid_ns(ns: OwnedFd) {
    use std::os::fd::IntoRawFd;
    // Never closed: the core and every scenario process forked from it
    // hold it until they end (close-on-exec: a program they run does not).
    OUTER_PID_NS.store(ns.into_raw_fd(), std::sync::atomic::Ordering::Relaxed);
}

/// The pid the runner's own namespace (`/proc`'s) gives the process that
/// has `pid` in ours: one `ioctl` on the namespace's descriptor.
fn outer_pid(pid: i32) -> Option<i32> {
    let ns = OUTER_PID_NS.load(std::sync::atomic::Ordering::Relaxed);
    if ns < 0 {
        return None;
    }
    // SAFETY: `ns` is a descriptor this process holds open for good (see
    // `keep_outer_pid_ns`); NS_GET_PID_IN_PIDNS takes a pid by value and
    // returns a pid or -1 (ENOTTY on a kernel or file that lacks it).
    let r = unsafe { libc::ioctl(ns, libc::NS_GET_PID_IN_PIDNS, pid) };
    (r > 0).then_some(r)
}

/// The pid `/proc` shows for the process `pid` (of our namespace), from
/// the `Pid:` line of a pidfd's fdinfo.
///
/// Done after every `fork` of a process in forkscope's PID namespace, so
/// it is kept short: the fdinfo file is opened relative to a descriptor of
/// this process's `/proc/self/fdinfo` directory (no walk through
/// `/proc/self` each time) and read once into the stack.
fn fdinfo_pid(pid: i32) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let fd = crate::collector::pidfd_open(pid)?;
    let mut buf = [0u8; 512];
    let n = read_fdinfo(fd.as_raw_fd(), &mut buf)?;
    parse_fdinfo_pid(&buf[..n])
}

/// This process's `/proc/self/fdinfo` directory (`O_PATH`), opened once
/// per process: owner's pid in the high 32 bits, the fd in the low ones
/// (0: none yet). A forked child inherits the parent's, which names the
/// parent's fds, so it opens its own.
static FDINFO_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Reads `/proc/self/fdinfo/FD` into `buf` with one `read`.
fn read_fdinfo(fd: i32, buf: &mut [u8]) -> Option<usize> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::atomic::Ordering;
    let me = nix::unistd::getpid().as_raw();
    let held = FDINFO_DIR.load(Ordering::Relaxed);
    let dir = if held != 0 && (held >> 32) as i32 == me {
        held as u32 as i32
    } else {
        let path = c"/proc/self/fdinfo";
        // SAFETY: a NUL-terminated path and plain flags; returns a new fd
        // or -1.
        let new = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if new < 0 {
            return None;
        }
        // Kept open until this process ends (or execs: close-on-exec).
        // The parent's copy, if we inherited one, stays open too: one fd.
        FDINFO_DIR.store(
            (u64::from(me as u32) << 32) | u64::from(new as u32),
            Ordering::Relaxed,
        );
        new
    };
    // The fd's number as a NUL-terminated name, without allocating.
    let mut name = [0u8; 12];
    let mut digits = [0u8; 10];
    let (mut v, mut k) = (u32::try_from(fd).ok()?, 0);
    loop {
        digits[k] = b'0' + (v % 10) as u8;
        k += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (j, d) in digits[..k].iter().rev().enumerate() {
        name[j] = *d;
    }
    // SAFETY: `dir` is an open directory fd (never closed while this
    // process runs), `name` is NUL-terminated (at most 10 digits in 12
    // zeroed bytes); returns a new fd or -1.
    let file = unsafe { libc::openat(dir, name.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if file < 0 {
        return None;
    }
    // SAFETY: `openat` just returned this fd; nothing else owns it.
    let file = unsafe { OwnedFd::from_raw_fd(file) };
    nix::unistd::read(&file, buf).ok()
}

/// The `Pid:` line of a pidfd's fdinfo.
fn parse_fdinfo_pid(text: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&p: &i32| p > 0)
}

/// Must a child we fork tell us its pid itself (on a pipe)?
pub fn child_tells_its_pid() -> bool {
    pid_view() == PidView::Child
}

/// The pid `ps` shows for `child`, just forked by us (not reaped yet, so
/// its pid is still its own); `None` when only the child can tell.
pub fn host_pid_of(child: nix::unistd::Pid) -> Option<i32> {
    match pid_view() {
        PidView::Same => Some(child.as_raw()),
        // (Should the ioctl fail after all, fdinfo still knows.)
        PidView::Outer => outer_pid(child.as_raw()).or_else(|| fdinfo_pid(child.as_raw())),
        PidView::Fdinfo => fdinfo_pid(child.as_raw()),
        PidView::Child => None,
    }
}

/// Our own pid as `ps` shows it.
pub fn own_host_pid() -> i32 {
    match pid_view() {
        PidView::Same => nix::unistd::getpid().as_raw(),
        PidView::Outer => {
            let me = nix::unistd::getpid().as_raw();
            outer_pid(me).unwrap_or_else(|| readlink_self().unwrap_or(me))
        }
        // `/proc/self` is a link to our pid in `/proc`'s namespace (read
        // into the stack: every forked child does this first).
        _ => readlink_self().unwrap_or_else(|| nix::unistd::getpid().as_raw()),
    }
}

/// Our pid as the link `/proc/self` names it.
fn readlink_self() -> Option<i32> {
    let mut buf = [0u8; 16];
    // SAFETY: a NUL-terminated path and a buffer of the length given;
    // returns the bytes written or -1.
    let n = unsafe { libc::readlink(c"/proc/self".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n)
        .ok()
        .and_then(|n| std::str::from_utf8(&buf[..n.min(buf.len())]).ok())
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// What `share_relro` would move: this test binary's relocated
    /// read-only data (it is position-independent, like forkscope),
    /// page-aligned and only where the mapping is private and read-only.
    #[test]
    fn relro_ranges_are_whole_read_only_pages() {
        let ranges = relro_ranges();
        assert!(!ranges.is_empty(), "no PT_GNU_RELRO range found");
        let read_only = read_only_private_maps();
        for (start, len) in ranges {
            assert_eq!(start % 4096, 0);
            assert!(len > 0 && len % 4096 == 0);
            assert!(covered(&read_only, start, start + len));
        }
    }

    /// Off the main stack (a test runs on a thread of its own) nothing
    /// is given back: the thread's memory is untouched.
    #[test]
    fn trimming_the_stack_from_a_thread_leaves_memory_alone() {
        read_only_private_maps(); // learns the main stack's bounds
        let deep = [7u8; 64 * 1024];
        std::hint::black_box(&deep);
        let kept = vec![9u8; 1 << 20];
        trim_stack();
        assert!(kept.iter().all(|&b| b == 9));
        assert!(std::hint::black_box(&deep).iter().all(|&b| b == 7));
    }

    /// After the move, `mprotect` can still make the data writable for
    /// this process alone (glibc does so when `dlopen` loads a library
    /// that wants an executable stack); a shared mapping of the sealed
    /// file refused it with EACCES. In a forked child, which moves its
    /// own copy: this test binary is not the runner. (glibc's `fork`
    /// leaves malloc usable in the child; the child only reads `/proc`
    /// and makes system calls before `_exit`.)
    #[test]
    fn moved_read_only_data_can_still_be_made_writable_by_its_process() {
        // SAFETY: see above; the child ends with `_exit`, running no
        // destructor or atexit handler of the test harness.
        match unsafe { libc::fork() } {
            0 => {
                let ranges = relro_ranges();
                let code = if ranges.is_empty() || share_relro() == 0 {
                    2 // nothing moved here: nothing to check
                } else {
                    let (start, _) = ranges[0];
                    let page = start as *mut libc::c_void;
                    // SAFETY: a page of our own relro range, mapped.
                    let rw =
                        unsafe { libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_WRITE) };
                    // Writes the byte that is there: it copies the page
                    // for this process and changes nothing.
                    // SAFETY: the page is writable now (rw == 0).
                    let ok = rw == 0
                        && unsafe {
                            let b = start as *mut u8;
                            b.write_volatile(b.read_volatile());
                            libc::mprotect(page, 4096, libc::PROT_READ) == 0
                        };
                    if ok { 0 } else { 1 }
                };
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(code) }
            }
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: waits for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child status {status}");
                assert_ne!(
                    libc::WEXITSTATUS(status),
                    1,
                    "mprotect refused after the move"
                );
            }
            _ => panic!("fork failed"),
        }
    }

    #[test]
    fn a_range_is_covered_only_by_adjacent_mappings() {
        let maps = [(0x1000, 0x3000), (0x3000, 0x5000), (0x6000, 0x7000)];
        assert!(covered(&maps, 0x1000, 0x5000));
        assert!(covered(&maps, 0x2000, 0x4000));
        assert!(!covered(&maps, 0x4000, 0x7000));
        assert!(!covered(&maps, 0x0, 0x2000));
    }

    #[test]
    fn a_pidfds_fdinfo_names_the_pid_proc_shows() {
        let me = nix::unistd::getpid().as_raw();
        let shown: i32 = std::fs::read_link("/proc/self")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // Twice: the second read goes through the directory kept open.
        assert_eq!(fdinfo_pid(me), Some(shown));
        assert_eq!(fdinfo_pid(me), Some(shown));
        assert_eq!(fdinfo_pid(i32::MAX), None);
    }

    /// The ioctl that gives a parent its child's pid as `ps` shows it:
    /// asked about our own namespace, it gives our own pid back (on a
    /// kernel older than 6.9 it is refused, and fdinfo answers instead).
    #[test]
    fn a_pid_namespace_descriptor_translates_pids() {
        let me = nix::unistd::getpid().as_raw();
        let ns = std::fs::File::open("/proc/self/ns/pid").unwrap();
        // SAFETY: an open nsfs fd and a pid by value.
        let r = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_PID_IN_PIDNS, me) };
        let errno = nix::errno::Errno::last();
        if r < 0 && matches!(errno, nix::errno::Errno::ENOTTY | nix::errno::Errno::EINVAL) {
            return;
        }
        assert_eq!(r, me);
        // SAFETY: as above; pid i32::MAX does not exist.
        let none = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_PID_IN_PIDNS, i32::MAX) };
        assert!(none < 0);
    }

    #[test]
    fn the_pid_line_is_found_among_the_others() {
        let text =
            b"pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1043\nPid:\t4242\nNSpid:\t4242\t7\n";
        assert_eq!(parse_fdinfo_pid(text), Some(4242));
        assert_eq!(parse_fdinfo_pid(b"Pid:\t-1\n"), None);
        assert_eq!(parse_fdinfo_pid(b"pos:\t0\n"), None);
    }
}
