//! Measuring a process: a counting allocator, resident memory, the descriptor limit, child
//! processes and a listener with a deep accept queue.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use tokio::net::{TcpListener, TcpSocket};

/// Counts the bytes allocated and not yet freed, so a figure can tell the heap that idle
/// connections hold from the RSS (which also keeps pages freed after a busy phase).
#[allow(unsafe_code)] // a GlobalAlloc is an unsafe trait; this one only forwards to System
pub(crate) mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    pub(crate) struct Counting;

    static LIVE: AtomicUsize = AtomicUsize::new(0);

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let ptr = System.alloc(layout);
            if !ptr.is_null() {
                LIVE.fetch_add(layout.size(), Relaxed);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let ptr = System.alloc_zeroed(layout);
            if !ptr.is_null() {
                LIVE.fetch_add(layout.size(), Relaxed);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let new = System.realloc(ptr, layout, new_size);
            if !new.is_null() {
                LIVE.fetch_add(new_size, Relaxed);
                LIVE.fetch_sub(layout.size(), Relaxed);
            }
            new
        }
    }

    /// Bytes allocated and not freed.
    pub(crate) fn live() -> usize {
        LIVE.load(Relaxed)
    }
}

/// A listener with a deep accept queue (thousands of connects at once).
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Raises RLIMIT_NOFILE's soft limit to the hard one (through python3's `resource.prlimit`, on
/// this process) and returns the soft limit now in force.
pub(crate) fn raise_nofile() -> Option<u64> {
    let pid = std::process::id().to_string();
    let script = "import resource,sys\n\
                  p=int(sys.argv[1])\n\
                  s,h=resource.prlimit(p,resource.RLIMIT_NOFILE)\n\
                  resource.prlimit(p,resource.RLIMIT_NOFILE,(h,h))\n";
    match Command::new("python3")
        .args(["-c", script, &pid])
        .stdin(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: raising RLIMIT_NOFILE with python3 failed: {status}"),
        Err(error) => eprintln!("warning: python3 not run to raise RLIMIT_NOFILE: {error}"),
    }
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// VmRSS after giving the allocator's free pages back to the kernel (`malloc_trim(0)`, glibc),
/// so the figure counts what the idle connections hold, not heap pages the in-flight requests
/// left behind. The same for every client measured.
pub(crate) fn trimmed_rss_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
    rss_bytes()
}

/// VmRSS of this process, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Kills the child process (by its own handle) when dropped.
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
