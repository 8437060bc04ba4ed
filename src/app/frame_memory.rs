//! The window's allocator keeps the memory of the last frame for the next.
//!
//! Every frame egui tessellates its shapes into fresh meshes (vectors of a
//! few megabytes with 200 processes on the stage) and frees them after the
//! paint. With glibc's defaults the freed top of the heap goes back to the
//! kernel (`brk` shrinks, or the block was `mmap`ed and is unmapped) and the
//! next frame faults every page of it in again: `perf` showed page faults in
//! 20–25 % of a frame's time at 30 000 events/s (docs/PERFORMANCE.md).
//! Here blocks up to 32 MiB come from the heap and up to 64 MiB of free
//! heap stay mapped: the maximum glibc's own sliding thresholds reach on a
//! 64-bit machine after a large block is freed, set from the start.

/// Blocks below this are allocated on the heap, not `mmap`ed one by one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
/// Free memory at the top of the heap kept mapped, up to this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD_BYTES: libc::c_int = 64 << 20;

/// Sets the thresholds above for the whole process (the window's). Idempotent.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's malloc parameters (under its own
    // lock); both values are in the range glibc accepts, and a refusal
    // (return 0) leaves the defaults, which are correct, only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
