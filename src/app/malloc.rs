//! The frame's big buffers (tessellated meshes, shape lists) are allocated
//! and freed every frame. With glibc's defaults, freeing them hands the
//! memory back to the kernel (`munmap`, or trimming the heap's top), and the
//! next frame faults it in again page by page: at 200 processes and 30 000
//! events/s that was about a third of the frame (`perf`: `exc_page_fault`,
//! `clear_page`, `unmap_page_range`). Keeping freed memory for reuse removes
//! it; nothing drawn changes.

/// Allocations under this come from the heap, not from a fresh `mmap`.
const MMAP_THRESHOLD_BYTES: i32 = 32 * 1024 * 1024;
/// The heap's free top is given back to the kernel only past this.
const TRIM_THRESHOLD_BYTES: i32 = 256 * 1024 * 1024;

/// Tunes the allocator for frame-by-frame work (once per process; only
/// the app's own process: the runner is another program).
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets allocator parameters; it takes plain
        // integers and is safe to call at any time (glibc takes its lock).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        }
    });
}
