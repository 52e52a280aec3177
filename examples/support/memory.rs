//! Measuring a process: a counting allocator, memory as the OS counts it (VmRSS, PSS), glibc's
//! own counters, the kernel's socket memory, the descriptor limit, child processes and a
//! listener with a deep accept queue.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use tokio::net::{TcpListener, TcpSocket};

/// Counts the bytes allocated and not yet freed, in all and by size class, so a figure can
/// tell the heap that idle connections hold from the RSS (which also keeps pages freed after a
/// busy phase).
///
/// It forwards to the allocator named by the environment variable [`ALLOCATOR_ENV`]
/// (`system`, the default: glibc's malloc; `jemalloc`; `mimalloc`; Linux only), read once,
/// before the process's first allocation, so every block is freed by the allocator that made
/// it. One binary measures all three; a parent passes the choice to its children through the
/// variable.
#[allow(unsafe_code)] // a GlobalAlloc is an unsafe trait; this one only forwards
pub(crate) mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

    pub(crate) struct Counting;

    /// The environment variable that names the allocator (`system`, `jemalloc`, `mimalloc`).
    pub(crate) const ALLOCATOR_ENV: &str = "KEEPALIVE_ALLOCATOR";

    /// The allocator under the counting one.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
    pub(crate) enum Backend {
        /// The C library's malloc (glibc's here).
        System,
        /// jemalloc (`tikv-jemallocator`, its defaults: 10 s dirty and muzzy decay).
        Jemalloc,
        /// mimalloc (the `mimalloc` crate, its defaults).
        Mimalloc,
    }

    impl Backend {
        pub(crate) fn name(self) -> &'static str {
            match self {
                Backend::System => "system",
                Backend::Jemalloc => "jemalloc",
                Backend::Mimalloc => "mimalloc",
            }
        }
    }

    /// 0: not chosen yet; else 1 + the `Backend`'s index.
    static BACKEND: AtomicU8 = AtomicU8::new(0);

    /// The allocator in use (chosen on the first call).
    pub(crate) fn backend() -> Backend {
        match BACKEND.load(Relaxed) {
            1 => Backend::System,
            2 => Backend::Jemalloc,
            3 => Backend::Mimalloc,
            _ => choose(),
        }
    }

    #[cold]
    fn choose() -> Backend {
        let chosen = from_env();
        let code = match chosen {
            Backend::System => 1,
            Backend::Jemalloc => 2,
            Backend::Mimalloc => 3,
        };
        // Only the first allocation chooses (before main there is one thread); the same
        // environment gives the same answer anyway.
        match BACKEND.compare_exchange(0, code, Relaxed, Relaxed) {
            Ok(_) => chosen,
            Err(_) => backend(),
        }
    }

    /// Reads [`ALLOCATOR_ENV`] without allocating (`getenv` returns a pointer into the
    /// environment).
    #[cfg(target_os = "linux")]
    fn from_env() -> Backend {
        // SAFETY: the name is NUL-terminated; getenv returns NULL or a NUL-terminated string
        // that nothing modifies while we read it (no thread sets the environment).
        let value = unsafe { libc::getenv(c"KEEPALIVE_ALLOCATOR".as_ptr()) };
        if value.is_null() {
            return Backend::System;
        }
        // SAFETY: as above.
        match unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes() {
            b"jemalloc" => Backend::Jemalloc,
            b"mimalloc" => Backend::Mimalloc,
            _ => Backend::System,
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn from_env() -> Backend {
        Backend::System
    }

    #[cfg(target_os = "linux")]
    macro_rules! forward {
        ($method:ident($($arg:expr),*)) => {
            match backend() {
                Backend::System => System.$method($($arg),*),
                Backend::Jemalloc => tikv_jemallocator::Jemalloc.$method($($arg),*),
                Backend::Mimalloc => mimalloc::MiMalloc.$method($($arg),*),
            }
        };
    }

    #[cfg(not(target_os = "linux"))]
    macro_rules! forward {
        ($method:ident($($arg:expr),*)) => {
            System.$method($($arg),*)
        };
    }

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
            let ptr = forward!(alloc(layout));
            if !ptr.is_null() {
                add(layout.size());
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let ptr = forward!(alloc_zeroed(layout));
            if !ptr.is_null() {
                add(layout.size());
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            forward!(dealloc(ptr, layout));
            sub(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let new = forward!(realloc(ptr, layout, new_size));
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

/// VmRSS after giving the allocator's free pages back to the kernel (`malloc_trim(0)`, glibc
/// only: `None` under another allocator), and how long the call took. No server calls it, so
/// this is not what an operator sees: label it "after malloc_trim" and never make it the
/// headline. Take it last, it changes what later figures see.
pub(crate) fn trimmed_rss_bytes() -> Option<(u64, std::time::Duration)> {
    if counting::backend() != counting::Backend::System {
        return None;
    }
    let start = std::time::Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
    let took = start.elapsed();
    Some((rss_bytes(), took))
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

/// The allocator's own counters, in bytes, whichever allocator [`counting`] forwards to:
/// what it got from the kernel (`arena` + `mmap`), what is handed out (`in_use`) and what it
/// holds free (`free`; for glibc most of it stays resident). Zeros where unknown.
///
/// - glibc: `mallinfo2`, summed over its arenas (`arena` by brk/arena growth, `mmap` for large
///   blocks, `free` = `fordblks`, `top_free` = `keepcost`);
/// - jemalloc: `stats.resident` as `arena`, `stats.allocated` as `in_use`, their difference as
///   `free` (dirty pages not yet decayed, and metadata);
/// - mimalloc: its committed memory (`mi_process_info`) as `arena`, the counting allocator's
///   live bytes as `in_use`, their difference as `free`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MallocCounters {
    pub(crate) arena: u64,
    pub(crate) mmap: u64,
    pub(crate) in_use: u64,
    pub(crate) free: u64,
    /// glibc: free bytes at the top of the main heap, the only ones `malloc_trim`-less glibc
    /// returns from it.
    pub(crate) top_free: u64,
}

pub(crate) fn malloc_counters() -> MallocCounters {
    match counting::backend() {
        counting::Backend::System => glibc_counters(),
        #[cfg(target_os = "linux")]
        counting::Backend::Jemalloc => {
            use tikv_jemalloc_ctl::{epoch, stats};
            let _ = epoch::advance();
            let resident = stats::resident::read().unwrap_or(0) as u64;
            let allocated = stats::allocated::read().unwrap_or(0) as u64;
            MallocCounters {
                arena: resident,
                mmap: 0,
                in_use: allocated,
                free: resident.saturating_sub(allocated),
                top_free: 0,
            }
        }
        #[cfg(target_os = "linux")]
        counting::Backend::Mimalloc => {
            let mut commit = 0usize;
            let null = std::ptr::null_mut();
            // SAFETY: every out-pointer is either NULL (not wanted) or a valid usize.
            #[allow(unsafe_code)]
            unsafe {
                libmimalloc_sys::mi_process_info(
                    null,
                    null,
                    null,
                    null,
                    null,
                    &mut commit,
                    null,
                    null,
                );
            }
            let live = counting::live() as u64;
            MallocCounters {
                arena: commit as u64,
                mmap: 0,
                in_use: live,
                free: (commit as u64).saturating_sub(live),
                top_free: 0,
            }
        }
        #[cfg(not(target_os = "linux"))]
        _ => MallocCounters::default(),
    }
}

fn glibc_counters() -> MallocCounters {
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

/// The allocator's own statistics, written to this process's stderr: glibc's per-arena
/// `malloc_stats`, jemalloc's `malloc_stats_print` (merged arenas, no size classes) or
/// mimalloc's `mi_stats_print`.
pub(crate) fn print_malloc_stats() {
    match counting::backend() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        counting::Backend::System => {
            // SAFETY: malloc_stats takes no arguments; it writes to stderr.
            #[allow(unsafe_code)]
            unsafe {
                libc::malloc_stats();
            }
        }
        #[cfg(target_os = "linux")]
        counting::Backend::Jemalloc => {
            let mut options = tikv_jemalloc_ctl::stats_print::Options::default();
            options.skip_constants = true;
            options.skip_per_arena = true;
            options.skip_bin_size_classes = true;
            options.skip_large_size_classes = true;
            let _ = tikv_jemalloc_ctl::stats_print::stats_print(std::io::stderr(), options);
        }
        #[cfg(target_os = "linux")]
        counting::Backend::Mimalloc => {
            // SAFETY: no output function: mimalloc writes to stderr.
            #[allow(unsafe_code)]
            unsafe {
                libmimalloc_sys::mi_stats_print_out(None, std::ptr::null_mut());
            }
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

/// One glibc arena as `malloc_info` describes it, in bytes: what it got from the kernel, what
/// is handed out (tcache and fastbin chunks count as free here, as glibc counts them), the
/// free chunks in its bins (holes between chunks in use: glibc cannot give them back without
/// `malloc_trim`) and the free top (what it can give back, and does past
/// `M_TRIM_THRESHOLD`).
#[derive(Debug, Default, Clone)]
pub(crate) struct ArenaInfo {
    pub(crate) nr: u32,
    pub(crate) system: u64,
    pub(crate) in_use: u64,
    pub(crate) free_chunks: u64,
    pub(crate) free_bytes: u64,
    pub(crate) top: u64,
    /// Free bytes in holes by chunk size: up to 1 KiB, 16 KiB, 64 KiB, 1 MiB, larger.
    pub(crate) holes_by_size: [u64; 5],
}

impl ArenaInfo {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "nr": self.nr,
            "system": self.system,
            "in_use": self.in_use,
            "free_chunks": self.free_chunks,
            "free_bytes": self.free_bytes,
            "top": self.top,
            "holes_by_size": self.holes_by_size,
        })
    }
}

/// glibc's `malloc_info`, per arena (empty with another allocator or on failure).
pub(crate) fn malloc_info() -> Vec<ArenaInfo> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if counting::backend() == counting::Backend::System {
        let path = format!("/tmp/malloc_info-{}.xml", std::process::id());
        let c_path = std::ffi::CString::new(path.clone()).expect("no NUL");
        // SAFETY: fopen gets NUL-terminated strings; malloc_info writes to the open FILE,
        // which is closed once.
        #[allow(unsafe_code)]
        unsafe {
            let file = libc::fopen(c_path.as_ptr(), c"w".as_ptr());
            if file.is_null() {
                return Vec::new();
            }
            libc::malloc_info(0, file);
            libc::fclose(file);
        }
        let xml = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        return parse_malloc_info(&xml);
    }
    Vec::new()
}

/// Parses `malloc_info`'s XML (glibc 2.x): per `<heap nr=..>`, its `<size .. total= count=>`
/// lines (free chunks in the fastbins and bins), `<total type="fast"|"rest">` (free bytes,
/// the top chunk included in "rest") and `<system type="current">`.
fn parse_malloc_info(xml: &str) -> Vec<ArenaInfo> {
    fn attr(line: &str, name: &str) -> Option<u64> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        line[start..end].parse().ok()
    }
    let mut arenas = Vec::new();
    let mut current: Option<(ArenaInfo, u64, u64)> = None; // (arena, sizes total, fast+rest)
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<heap ") {
            let nr = attr(line, "nr").unwrap_or(0) as u32;
            current = Some((
                ArenaInfo {
                    nr,
                    ..Default::default()
                },
                0,
                0,
            ));
        } else if let Some((arena, sizes, free)) = current.as_mut() {
            if line.starts_with("<size ") || line.starts_with("<unsorted ") {
                let total = attr(line, "total").unwrap_or(0);
                let count = attr(line, "count").unwrap_or(0);
                let to = attr(line, "to").unwrap_or(u64::MAX);
                *sizes += total;
                arena.free_chunks += count;
                let bucket = match to {
                    0..=1024 => 0,
                    1025..=16_384 => 1,
                    16_385..=65_536 => 2,
                    65_537..=1_048_576 => 3,
                    _ => 4,
                };
                arena.holes_by_size[bucket] += total;
            } else if line.starts_with("<total type=\"fast\"")
                || line.starts_with("<total type=\"rest\"")
            {
                *free += attr(line, "size").unwrap_or(0);
            } else if line.starts_with("<system type=\"current\"") {
                arena.system = attr(line, "size").unwrap_or(0);
            } else if line.starts_with("</heap>") {
                let (mut arena, sizes, free) = current.take().expect("inside a heap");
                arena.free_bytes = sizes;
                arena.top = free.saturating_sub(sizes);
                arena.in_use = arena.system.saturating_sub(free);
                arenas.push(arena);
            }
        }
    }
    arenas
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
