//! Measuring a process: a counting allocator, memory as the OS counts it (VmRSS, PSS), glibc's
//! own counters, the kernel's socket memory, the descriptor limit, child processes and a
//! listener with a deep accept queue.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use tokio::net::{TcpListener, TcpSocket};

/// Counts the bytes allocated and not yet freed, in all and by size class, so a figure can
/// tell the heap that idle connections hold from the RSS (which also keeps pages freed after a
/// busy phase).
#[allow(unsafe_code)] // a GlobalAlloc is an unsafe trait; this one only forwards to System
pub(crate) mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    pub(crate) struct Counting;

    static LIVE: AtomicUsize = AtomicUsize::new(0);

    /// Size classes: class `c` holds requests of 2^(c-1)+1 ..= 2^c bytes (class 0: 0 and 1).
    const CLASSES: usize = 48;
    static COUNT: [AtomicUsize; CLASSES] = [const { AtomicUsize::new(0) }; CLASSES];
    static BYTES: [AtomicUsize; CLASSES] = [const { AtomicUsize::new(0) }; CLASSES];

    fn class(size: usize) -> usize {
        let c = (usize::BITS - size.saturating_sub(1).leading_zeros()) as usize;
        c.min(CLASSES - 1)
    }

    fn add(size: usize) {
        LIVE.fetch_add(size, Relaxed);
        COUNT[class(size)].fetch_add(1, Relaxed);
        BYTES[class(size)].fetch_add(size, Relaxed);
    }

    fn sub(size: usize) {
        LIVE.fetch_sub(size, Relaxed);
        COUNT[class(size)].fetch_sub(1, Relaxed);
        BYTES[class(size)].fetch_sub(size, Relaxed);
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let ptr = System.alloc(layout);
            if !ptr.is_null() {
                add(layout.size());
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let ptr = System.alloc_zeroed(layout);
            if !ptr.is_null() {
                add(layout.size());
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout);
            sub(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let new = System.realloc(ptr, layout, new_size);
            if !new.is_null() {
                add(new_size);
                sub(layout.size());
            }
            new
        }
    }

    /// Bytes allocated and not freed.
    pub(crate) fn live() -> usize {
        LIVE.load(Relaxed)
    }

    /// Live allocations by size class: (largest size of the class, allocations, bytes), the
    /// empty classes left out.
    pub(crate) fn classes() -> Vec<(usize, usize, usize)> {
        (0..CLASSES)
            .map(|c| (1usize << c, COUNT[c].load(Relaxed), BYTES[c].load(Relaxed)))
            .filter(|&(_, n, _)| n > 0)
            .collect()
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

/// VmRSS after giving the allocator's free pages back to the kernel (`malloc_trim(0)`, glibc).
/// No server calls it, so this is not what an operator sees: label it "after malloc_trim" and
/// never make it the headline. Take it last, it changes what later figures see.
pub(crate) fn trimmed_rss_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
    rss_bytes()
}

/// A `kB` field of a /proc file of this process, in bytes (0 when missing).
fn proc_self_kb(file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// VmRSS of this process, in bytes: resident memory as the OS counts it.
pub(crate) fn rss_bytes() -> u64 {
    proc_self_kb("status", "VmRSS:")
}

/// PSS of this process (shared pages split among the processes that map them), in bytes.
pub(crate) fn pss_bytes() -> u64 {
    proc_self_kb("smaps_rollup", "Pss:")
}

/// glibc's counters of its heap (`mallinfo2`, summed over its arenas), in bytes: what it got
/// from the kernel (`arena` by brk/arena growth, `mmap` for large blocks), what is handed out
/// (`in_use`) and what it holds free (`free`; most of it stays resident). Zeros elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MallocCounters {
    pub(crate) arena: u64,
    pub(crate) mmap: u64,
    pub(crate) in_use: u64,
    pub(crate) free: u64,
    /// Free bytes at the top of the main heap, the only ones `malloc_trim`-less glibc returns.
    pub(crate) top_free: u64,
}

pub(crate) fn malloc_counters() -> MallocCounters {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
        #[allow(unsafe_code)]
        let info = unsafe { libc::mallinfo2() };
        MallocCounters {
            arena: info.arena as u64,
            mmap: info.hblkhd as u64,
            in_use: info.uordblks as u64,
            free: info.fordblks as u64,
            top_free: info.keepcost as u64,
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    MallocCounters::default()
}

/// glibc's per-arena statistics (`malloc_stats`), written to this process's stderr.
pub(crate) fn print_malloc_stats() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_stats takes no arguments; it writes to stderr.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_stats();
    }
}

/// The kernel's TCP socket counters (`/proc/net/sockstat`, the whole machine): sockets in use,
/// and the memory of all TCP socket buffers in bytes (the `mem` field is in pages). RSS does
/// not include it.
pub(crate) fn tcp_sockstat() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("TCP:")).unwrap_or("");
    let field = |name: &str| {
        let mut words = line.split_whitespace();
        words
            .by_ref()
            .find(|w| *w == name)
            .and_then(|_| words.next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("inuse"), field("mem") * 4096)
}

/// Kills the child process (by its own handle) when dropped.
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
