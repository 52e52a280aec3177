//! The kernel's view of TCP sockets, read from `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! Keep-alive bugs show up as sockets left behind in the wrong state: a server that never
//! closes idle connections piles up `CLOSE_WAIT` sockets, a client that closes first where it
//! should not collects `TIME_WAIT` sockets, and a connection pool that does not reuse its
//! connections shows far more sockets than requests in flight. Tests, benchmarks and health
//! checks use this module to count the sockets on each side of a connection by state, e.g.
//! "the server's end of the connection from client port 40312 is gone and the client's end is
//! in `TIME_WAIT`".
//!
//! ```
//! use keepalive::tcp_state::{count, Filter};
//!
//! // Sockets whose local port is 8080: the listener and the server's end of every connection.
//! match count(Filter::new().local_port(8080)) {
//!     Ok(counts) => println!("port 8080: {counts}"),
//!     // Not Linux, or /proc is not mounted.
//!     Err(error) => println!("socket states unavailable: {error}"),
//! }
//! ```
//!
//! The tables are only read on Linux: on other operating systems [`sockets`] and [`count`]
//! return an [`io::Error`] of kind [`io::ErrorKind::Unsupported`]. [`parse_proc_net_tcp`] is
//! a pure parser and works everywhere. The tables list the sockets of the calling process's
//! network namespace, from every process in it.

#[cfg(target_os = "linux")]
mod sock_diag;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcpState {
    /// `TCP_ESTABLISHED` (1): the connection is open in both directions.
    Established,
    /// `TCP_SYN_SENT` (2): the client sent a SYN and waits for the SYN-ACK.
    SynSent,
    /// `TCP_SYN_RECV` (3): the server answered a SYN and waits for the final ACK.
    SynRecv,
    /// `TCP_FIN_WAIT1` (4): this end closed and waits for its FIN to be acknowledged.
    FinWait1,
    /// `TCP_FIN_WAIT2` (5): this end's FIN was acknowledged; it waits for the peer's FIN.
    FinWait2,
    /// `TCP_TIME_WAIT` (6): both ends closed and this end closed first; the 4-tuple is held.
    TimeWait,
    /// `TCP_CLOSE` (7): closed (or bound but neither listening nor connected).
    Close,
    /// `TCP_CLOSE_WAIT` (8): the peer closed; this end has not closed yet.
    CloseWait,
    /// `TCP_LAST_ACK` (9): the peer closed first, then this end; waits for the last ACK.
    LastAck,
    /// `TCP_LISTEN` (10): a listening socket.
    Listen,
    /// `TCP_CLOSING` (11): both ends closed at the same time.
    Closing,
    /// `TCP_NEW_SYN_RECV` (12): a request socket for a connection being established.
    NewSynRecv,
}

/// Every state, in kernel order (index = code - 1).
const ALL_STATES: [TcpState; 12] = [
    TcpState::Established,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Listen,
    TcpState::Closing,
    TcpState::NewSynRecv,
];

impl TcpState {
    /// The state for a kernel state code (the `st` column of `/proc/net/tcp`), or `None` for
    /// a code this version does not know.
    pub fn from_kernel(code: u8) -> Option<TcpState> {
        let index = usize::from(code).checked_sub(1)?;
        ALL_STATES.get(index).copied()
    }

    /// The kernel's state code (the `st` column of `/proc/net/tcp`).
    fn code(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
            TcpState::NewSynRecv => 12,
        }
    }

    /// Index into [`StateCounts`]' array.
    fn index(self) -> usize {
        usize::from(self.code() - 1)
    }

    /// The state's name as `netstat` prints it (the kernel's name without `TCP_`), e.g.
    /// `"ESTABLISHED"`, `"TIME_WAIT"`, `"CLOSE_WAIT"`, `"FIN_WAIT2"`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One socket as listed in /proc/net/tcp{,6}.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, used by dual-stack sockets) are reported as
/// IPv4 addresses. A listening socket's remote address is the unspecified address, port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    /// This end of the socket.
    pub local: SocketAddr,
    /// The peer's end of the socket.
    pub remote: SocketAddr,
    /// The socket's state.
    pub state: TcpState,
    /// Time left on the kernel's keepalive timer (the `tr` field is 2: `sk_timer` pending,
    /// which on a connected socket is the `SO_KEEPALIVE` timer), in the 10 ms clock ticks
    /// (`USER_HZ`) the table uses. `None` when that timer is not armed.
    pub keepalive_timer: Option<std::time::Duration>,
}

/// Which end of a socket a port filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The socket's own end ([`SocketEntry::local`]).
    Local,
    /// The peer's end ([`SocketEntry::remote`]).
    Remote,
}

/// Which sockets to count.
///
/// A new filter matches every socket; each builder method adds a condition, and a socket
/// matches when it meets all of them. Setting the same condition twice keeps the last value.
///
/// The server's end of a connection from client port `c` to server port `s` is
/// `Filter::new().local_port(s).remote_port(c)`; the client's end is
/// `Filter::new().local_port(c).remote_port(s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Filter {
    local_port: Option<u16>,
    remote_port: Option<u16>,
    local_ip: Option<IpAddr>,
    remote_ip: Option<IpAddr>,
}

impl Filter {
    /// A filter matching every socket.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Only sockets whose local port is `port`.
    pub fn local_port(mut self, port: u16) -> Filter {
        self.local_port = Some(port);
        self
    }

    /// Only sockets whose remote port is `port` (a listening socket's remote port is 0).
    pub fn remote_port(mut self, port: u16) -> Filter {
        self.remote_port = Some(port);
        self
    }

    /// Only sockets whose local address is `ip`. An IPv4-mapped IPv6 address is treated as
    /// the IPv4 address, like the sockets' own addresses.
    pub fn local_ip(mut self, ip: IpAddr) -> Filter {
        self.local_ip = Some(canonical_ip(ip));
        self
    }

    /// Only sockets whose remote address is `ip`. An IPv4-mapped IPv6 address is treated as
    /// the IPv4 address, like the sockets' own addresses.
    pub fn remote_ip(mut self, ip: IpAddr) -> Filter {
        self.remote_ip = Some(canonical_ip(ip));
        self
    }

    /// The local port condition, if any (checked in the kernel by `sock_diag`).
    #[cfg(target_os = "linux")]
    pub(crate) fn local_port_condition(&self) -> Option<u16> {
        self.local_port
    }

    /// The remote port condition, if any.
    #[cfg(target_os = "linux")]
    pub(crate) fn remote_port_condition(&self) -> Option<u16> {
        self.remote_port
    }

    /// Whether `entry` meets every condition of this filter.
    pub fn matches(&self, entry: &SocketEntry) -> bool {
        self.side_matches(entry, Side::Local) && self.side_matches(entry, Side::Remote)
    }

    fn side_matches(&self, entry: &SocketEntry, side: Side) -> bool {
        let (addr, port, ip) = match side {
            Side::Local => (entry.local, self.local_port, self.local_ip),
            Side::Remote => (entry.remote, self.remote_port, self.remote_ip),
        };
        port.is_none_or(|port| addr.port() == port)
            && ip.is_none_or(|ip| canonical_ip(addr.ip()) == ip)
    }
}

/// Counts of sockets by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    counts: [usize; ALL_STATES.len()],
}

impl StateCounts {
    /// The number of sockets in `state`.
    pub fn get(&self, state: TcpState) -> usize {
        self.counts[state.index()]
    }

    /// The number of sockets in `TIME_WAIT`.
    pub fn time_wait(&self) -> usize {
        self.get(TcpState::TimeWait)
    }

    /// The number of sockets in `CLOSE_WAIT`.
    pub fn close_wait(&self) -> usize {
        self.get(TcpState::CloseWait)
    }

    /// The number of sockets in `ESTABLISHED`.
    pub fn established(&self) -> usize {
        self.get(TcpState::Established)
    }

    /// The number of sockets in any state.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// The states with at least one socket and their counts, in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, usize)> + '_ {
        ALL_STATES
            .iter()
            .zip(self.counts.iter())
            .filter(|&(_, &n)| n != 0)
            .map(|(&state, &n)| (state, n))
    }

    pub(crate) fn add(&mut self, state: TcpState) {
        self.counts[state.index()] += 1;
    }
}

impl fmt::Display for StateCounts {
    /// Non-zero states in kernel order, e.g. `ESTABLISHED=3 TIME_WAIT=1`; `none` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (state, n) in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{state}={n}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Reads all sockets from /proc/net/tcp and /proc/net/tcp6 (a missing tcp6 file, e.g. IPv6
/// disabled, is not an error).
///
/// Returns an error of kind [`io::ErrorKind::Unsupported`] on operating systems other than
/// Linux.
pub fn sockets() -> io::Result<Vec<SocketEntry>> {
    let mut entries = Vec::new();
    for_each_table(|text| entries.extend(entries_in(text)))?;
    Ok(entries)
}

/// Counts sockets matching the filter by state: through the kernel's netlink `sock_diag`
/// interface where it answers (ports filtered in the kernel: with tens of thousands of sockets
/// much cheaper than reading the tables), else from /proc/net/tcp and tcp6.
///
/// Returns an error of kind [`io::ErrorKind::Unsupported`] on operating systems other than
/// Linux.
pub fn count(filter: Filter) -> io::Result<StateCounts> {
    #[cfg(target_os = "linux")]
    if let Ok(counts) = sock_diag::count(&filter) {
        return Ok(counts);
    }
    count_proc(filter)
}

/// Counts sockets matching the filter by state through netlink `sock_diag` only (Linux 4.16
/// or later for the in-kernel port filter).
///
/// Returns an error of kind [`io::ErrorKind::Unsupported`] on operating systems other than
/// Linux.
pub fn count_sock_diag(filter: Filter) -> io::Result<StateCounts> {
    #[cfg(target_os = "linux")]
    {
        sock_diag::count(&filter)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = filter;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "sock_diag is only available on Linux",
        ))
    }
}

/// Counts sockets matching the filter by state from /proc/net/tcp and tcp6 only.
///
/// Returns an error of kind [`io::ErrorKind::Unsupported`] on operating systems other than
/// Linux.
pub fn count_proc(filter: Filter) -> io::Result<StateCounts> {
    let mut counts = StateCounts::default();
    for_each_table(|text| {
        for entry in entries_in(text).filter(|entry| filter.matches(entry)) {
            counts.add(entry.state);
        }
    })?;
    Ok(counts)
}

/// Parses the text of /proc/net/tcp or tcp6 (header line skipped, malformed lines skipped).
///
/// Never panics: a line that does not start with a slot number, a local address, a remote
/// address and a known state code, all well formed, is skipped.
pub fn parse_proc_net_tcp(text: &str) -> Vec<SocketEntry> {
    entries_in(text).collect()
}

/// Reads `/proc/net/tcp` and `/proc/net/tcp6` (if present) and hands each one's text to `f`.
fn for_each_table(f: impl FnMut(&str)) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut f = f;
        f(&std::fs::read_to_string("/proc/net/tcp")?);
        match std::fs::read_to_string("/proc/net/tcp6") {
            Ok(text) => f(&text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = f;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP socket states are only available on Linux (/proc/net/tcp)",
        ))
    }
}

/// The well-formed entries of a `/proc/net/tcp{,6}` table, in one pass.
fn entries_in(text: &str) -> impl Iterator<Item = SocketEntry> + '_ {
    text.lines().filter_map(parse_line)
}

/// Parses one line: `  0: 0100007F:1F90 00000000:0000 0A ...`. The header line and anything
/// malformed give `None`.
fn parse_line(line: &str) -> Option<SocketEntry> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?.as_bytes().strip_suffix(b":")?;
    if slot.is_empty() || !slot.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let local = parse_endpoint(fields.next()?.as_bytes())?;
    let remote = parse_endpoint(fields.next()?.as_bytes())?;
    let state = fields.next()?.as_bytes();
    if state.len() > 2 {
        return None;
    }
    let state = TcpState::from_kernel(u8::try_from(parse_hex(state)?).ok()?)?;
    let _queues = fields.next();
    let keepalive_timer = fields.next().and_then(parse_keepalive_timer);
    Some(SocketEntry {
        local,
        remote,
        state,
        keepalive_timer,
    })
}

/// Parses the `tr:tm->when` field; `Some` only for timer kind 2 (`sk_timer`).
fn parse_keepalive_timer(field: &str) -> Option<std::time::Duration> {
    let (kind, when) = field.split_once(':')?;
    if parse_hex(kind.as_bytes())? != 2 {
        return None;
    }
    let ticks = parse_hex(when.as_bytes())?;
    Some(std::time::Duration::from_millis(u64::from(ticks) * 10))
}

/// Parses `ADDRESS:PORT`: the address as the kernel prints it (8 hex digits for IPv4, 32 for
/// IPv6), the port as up to 4 hex digits.
fn parse_endpoint(field: &[u8]) -> Option<SocketAddr> {
    let colon = field.iter().position(|&b| b == b':')?;
    let (address, port) = (&field[..colon], &field[colon + 1..]);
    if port.len() > 4 {
        return None;
    }
    let port = u16::try_from(parse_hex(port)?).ok()?;
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(parse_word(address)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (bytes, word) in octets.chunks_exact_mut(4).zip(address.chunks_exact(8)) {
                bytes.copy_from_slice(&parse_word(word)?);
            }
            canonical_ip(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One 32-bit word of an address: the kernel prints the in-memory (network order) bytes as a
/// native-endian `u32` with `%08X`, so the bytes are the parsed value's native-endian bytes.
fn parse_word(hex: &[u8]) -> Option<[u8; 4]> {
    if hex.len() != 8 {
        return None;
    }
    Some(parse_hex(hex)?.to_ne_bytes())
}

/// 1 to 8 hex digits (no sign, no prefix, no whitespace).
fn parse_hex(hex: &[u8]) -> Option<u32> {
    if hex.is_empty() || hex.len() > 8 {
        return None;
    }
    hex.iter().try_fold(0u32, |value, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(value << 4 | digit)
    })
}

/// An IPv4-mapped IPv6 address as IPv4, anything else unchanged.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER_V4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
    const HEADER_V6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
    const TAIL: &str = "00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0";

    /// An address as the kernel prints it on this host (works on either endianness).
    fn kernel_hex(ip: IpAddr) -> String {
        let octets: Vec<u8> = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        octets
            .chunks_exact(4)
            .map(|word| {
                format!(
                    "{:08X}",
                    u32::from_ne_bytes([word[0], word[1], word[2], word[3]])
                )
            })
            .collect()
    }

    fn kernel_line(slot: usize, local: SocketAddr, remote: SocketAddr, state: u8) -> String {
        format!(
            "{slot:4}: {}:{:04X} {}:{:04X} {state:02X} {TAIL}",
            kernel_hex(local.ip()),
            local.port(),
            kernel_hex(remote.ip()),
            remote.port(),
        )
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn entry(local: &str, remote: &str, state: TcpState) -> SocketEntry {
        SocketEntry {
            local: addr(local),
            remote: addr(remote),
            state,
            keepalive_timer: None,
        }
    }

    #[test]
    fn parses_the_keepalive_timer() {
        let line =
            "   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 02:00000FA0 00000000  0 0 1 1";
        let entry = parse_proc_net_tcp(&format!("header\n{line}\n"))[0];
        assert_eq!(
            entry.keepalive_timer,
            Some(std::time::Duration::from_secs(40))
        );
        let none = line.replace("02:00000FA0", "00:00000000");
        assert_eq!(
            parse_proc_net_tcp(&format!("header\n{none}\n"))[0].keepalive_timer,
            None
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_literal_v4_table_little_endian() {
        let text = format!(
            "{HEADER_V4}\n\
             \x20  0: 0100007F:1F90 00000000:0000 0A {TAIL}\n\
             \x20  1: 0100007F:1F90 0100007F:9C40 01 {TAIL}\n\
             \x20  2: 0100007F:9C40 0100007F:1F90 06 {TAIL}\n\
             \x20  3: 0F02000A:0016 0202000A:D431 08 {TAIL}\n"
        );
        assert_eq!(
            parse_proc_net_tcp(&text),
            vec![
                entry("127.0.0.1:8080", "0.0.0.0:0", TcpState::Listen),
                entry("127.0.0.1:8080", "127.0.0.1:40000", TcpState::Established),
                entry("127.0.0.1:40000", "127.0.0.1:8080", TcpState::TimeWait),
                entry("10.0.2.15:22", "10.0.2.2:54321", TcpState::CloseWait),
            ]
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_literal_v6_table_little_endian() {
        let text = format!(
            "{HEADER_V6}\n\
             \x20  0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A {TAIL}\n\
             \x20  1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 {TAIL}\n\
             \x20  2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C351 08 {TAIL}\n\
             \x20  3: B80D0120000000000000000001000000:01BB B80D0120000000000000000002000000:C352 05 {TAIL}\n"
        );
        assert_eq!(
            parse_proc_net_tcp(&text),
            vec![
                entry("[::]:8080", "[::]:0", TcpState::Listen),
                entry("[::1]:8080", "[::1]:50000", TcpState::Established),
                entry("127.0.0.1:8080", "127.0.0.1:50001", TcpState::CloseWait),
                entry(
                    "[2001:db8::1]:443",
                    "[2001:db8::2]:50002",
                    TcpState::FinWait2
                ),
            ]
        );
    }

    #[test]
    fn parses_generated_lines_on_this_host() {
        let cases = [
            entry("127.0.0.1:8080", "0.0.0.0:0", TcpState::Listen),
            entry("192.168.1.20:443", "203.0.113.7:61000", TcpState::TimeWait),
            entry("[::1]:8080", "[::1]:50000", TcpState::Established),
            entry(
                "[2001:db8::1]:443",
                "[fe80::1234:5678]:1",
                TcpState::LastAck,
            ),
            entry("[::]:65535", "[::]:0", TcpState::Listen),
        ];
        let mut text = String::from(HEADER_V6);
        for (slot, case) in cases.iter().enumerate() {
            text.push('\n');
            text.push_str(&kernel_line(
                slot,
                case.local,
                case.remote,
                case.state.code(),
            ));
        }
        assert_eq!(parse_proc_net_tcp(&text), cases);
    }

    #[test]
    fn v4_mapped_v6_is_reported_as_v4() {
        let local: SocketAddr = "[::ffff:127.0.0.1]:8080".parse().unwrap();
        let remote: SocketAddr = "[::ffff:10.1.2.3]:40000".parse().unwrap();
        let line = kernel_line(0, local, remote, 1);
        assert_eq!(line.split_whitespace().nth(1).unwrap().len(), 32 + 5);
        let parsed = parse_proc_net_tcp(&line);
        assert_eq!(
            parsed,
            vec![entry(
                "127.0.0.1:8080",
                "10.1.2.3:40000",
                TcpState::Established
            )]
        );
        let by_v4 = Filter::new().local_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(by_v4.matches(&parsed[0]));
        let by_mapped = Filter::new().remote_ip("::ffff:10.1.2.3".parse().unwrap());
        assert!(by_mapped.matches(&parsed[0]));
        // Only ::ffff:a.b.c.d is mapped; ::1 stays IPv6.
        let v6 = kernel_line(1, addr("[::1]:1"), addr("[::1]:2"), 1);
        assert!(parse_proc_net_tcp(&v6)[0].local.is_ipv6());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let good = kernel_line(
            7,
            addr("127.0.0.1:8080"),
            addr("127.0.0.1:40000"),
            TcpState::Established.code(),
        );
        let bad = [
            String::new(),
            "   ".to_string(),
            HEADER_V4.to_string(),
            HEADER_V6.to_string(),
            "garbage".to_string(),
            "0: garbage garbage 01".to_string(),
            // no slot
            "0100007F:1F90 0100007F:9C40 01".to_string(),
            // bad slot
            "x: 0100007F:1F90 0100007F:9C40 01".to_string(),
            ": 0100007F:1F90 0100007F:9C40 01".to_string(),
            // missing fields
            "0: 0100007F:1F90".to_string(),
            "0: 0100007F:1F90 0100007F:9C40".to_string(),
            // non-hex, signs, prefixes
            "0: 0100007G:1F90 0100007F:9C40 01".to_string(),
            "0: 0100007F:1F9G 0100007F:9C40 01".to_string(),
            "0: +100007F:1F90 0100007F:9C40 01".to_string(),
            "0: 0100007F:+F90 0100007F:9C40 01".to_string(),
            "0: 0100007F:1F90 0100007F:9C40 +1".to_string(),
            "0: 0x00007F:1F90 0100007F:9C40 01".to_string(),
            "0: 0100007F:1F90 0100007F:9C40 zz".to_string(),
            // wrong lengths
            "0: 100007F:1F90 0100007F:9C40 01".to_string(),
            "0: 0100007F0:1F90 0100007F:9C40 01".to_string(),
            "0: 0100007F:11F90 0100007F:9C40 01".to_string(),
            "0: 0100007F: 0100007F:9C40 01".to_string(),
            "0: 0100007F 0100007F:9C40 01".to_string(),
            "0: 0100007F:1F90:1 0100007F:9C40 01".to_string(),
            "0: 0000000000000000FFFF00000100007:1F90 0100007F:9C40 01".to_string(),
            "0: 0100007F:1F90 0100007F:9C40 001".to_string(),
            // unknown states
            "0: 0100007F:1F90 0100007F:9C40 00".to_string(),
            "0: 0100007F:1F90 0100007F:9C40 0D".to_string(),
            "0: 0100007F:1F90 0100007F:9C40 FF".to_string(),
            // non-ASCII where byte offsets would split a character
            "0: 0100007é:1F90 0100007F:9C40 01".to_string(),
            "0: 010000éé7F:1F90 0100007F:9C40 01".to_string(),
            "0: 0100007F:1Fé 0100007F:9C40 01".to_string(),
            "0: 0100007F:1F90 0100007F:9C40 é".to_string(),
            "é: 0100007F:1F90 0100007F:9C40 01".to_string(),
            "\u{0}\u{feff}\u{1F600}".to_string(),
        ];
        for line in &bad {
            assert_eq!(parse_proc_net_tcp(line), vec![], "{line:?}");
        }
        // Surrounded by garbage, the good line still parses.
        let text = format!("{}\n{good}\n{}\n", bad.join("\n"), bad.join("\r\n"));
        assert_eq!(
            parse_proc_net_tcp(&text),
            vec![entry(
                "127.0.0.1:8080",
                "127.0.0.1:40000",
                TcpState::Established
            )]
        );
    }

    #[test]
    fn truncated_lines_never_panic() {
        let lines = [
            kernel_line(0, addr("127.0.0.1:8080"), addr("0.0.0.0:0"), 10),
            kernel_line(1, addr("[2001:db8::1]:443"), addr("[::1]:5"), 6),
        ];
        for line in &lines {
            for end in 0..=line.len() {
                let prefix = &line[..end];
                // A prefix either has every field we need (and then parses like the whole line)
                // or is skipped.
                let parsed = parse_proc_net_tcp(prefix);
                assert!(parsed.is_empty() || parsed == parse_proc_net_tcp(line));
            }
        }
        // Every byte value in every position of a short line.
        let template = b"0: 0100007F:1F90 0100007F:9C40 01".to_vec();
        for position in 0..template.len() {
            for byte in 0..=u8::MAX {
                let mut bytes = template.clone();
                bytes[position] = byte;
                let text = String::from_utf8_lossy(&bytes);
                let _ = parse_proc_net_tcp(&text);
            }
        }
    }

    #[test]
    fn state_codes_round_trip() {
        assert_eq!(TcpState::from_kernel(0), None);
        for code in 1..=12u8 {
            let state = TcpState::from_kernel(code).unwrap();
            assert_eq!(state.code(), code);
            assert_eq!(ALL_STATES[state.index()], state);
        }
        for code in 13..=u8::MAX {
            assert_eq!(TcpState::from_kernel(code), None);
        }
        assert_eq!(TcpState::from_kernel(0x01), Some(TcpState::Established));
        assert_eq!(TcpState::from_kernel(0x06), Some(TcpState::TimeWait));
        assert_eq!(TcpState::from_kernel(0x08), Some(TcpState::CloseWait));
        assert_eq!(TcpState::from_kernel(0x0A), Some(TcpState::Listen));
        assert_eq!(TcpState::from_kernel(0x0C), Some(TcpState::NewSynRecv));
    }

    #[test]
    fn state_names() {
        let names: Vec<String> = ALL_STATES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING",
                "NEW_SYN_RECV",
            ]
        );
        for state in ALL_STATES {
            assert_eq!(state.to_string(), state.name());
        }
    }

    #[test]
    fn filter_matching() {
        let server = entry("127.0.0.1:8080", "127.0.0.1:40000", TcpState::Established);
        let client = entry("127.0.0.1:40000", "127.0.0.1:8080", TcpState::Established);
        let listener = entry("0.0.0.0:8080", "0.0.0.0:0", TcpState::Listen);
        let v6 = entry("[::1]:8080", "[::1]:40001", TcpState::TimeWait);
        let all = [server, client, listener, v6];
        let matching = |filter: Filter| -> Vec<SocketEntry> {
            all.iter().copied().filter(|e| filter.matches(e)).collect()
        };

        assert_eq!(Filter::new(), Filter::default());
        assert_eq!(matching(Filter::new()), all);
        assert_eq!(
            matching(Filter::new().local_port(8080)),
            [server, listener, v6]
        );
        assert_eq!(matching(Filter::new().remote_port(8080)), [client]);
        assert_eq!(matching(Filter::new().remote_port(0)), [listener]);
        assert_eq!(
            matching(Filter::new().local_port(8080).remote_port(40000)),
            [server]
        );
        assert_eq!(
            matching(Filter::new().local_port(40000).remote_port(8080)),
            [client]
        );
        assert_eq!(matching(Filter::new().local_port(1)), []);
        assert_eq!(
            matching(Filter::new().local_ip(Ipv4Addr::LOCALHOST.into())),
            [server, client]
        );
        assert_eq!(
            matching(Filter::new().local_ip(Ipv4Addr::UNSPECIFIED.into())),
            [listener]
        );
        assert_eq!(
            matching(Filter::new().remote_ip(Ipv6Addr::LOCALHOST.into())),
            [v6]
        );
        // An IPv4-mapped filter address matches IPv4 entries.
        assert_eq!(
            matching(Filter::new().remote_ip("::ffff:127.0.0.1".parse().unwrap())),
            [server, client]
        );
        // The last value set wins.
        assert_eq!(
            matching(Filter::new().local_port(1).local_port(40000)),
            [client]
        );
        // An IPv4-mapped entry address (should one slip through) matches an IPv4 filter.
        let mapped = entry(
            "[::ffff:10.0.0.1]:80",
            "[::ffff:10.0.0.2]:81",
            TcpState::Close,
        );
        assert!(Filter::new()
            .local_ip("10.0.0.1".parse().unwrap())
            .remote_ip("10.0.0.2".parse().unwrap())
            .matches(&mapped));
    }

    #[test]
    fn counts_and_display() {
        let mut counts = StateCounts::default();
        assert_eq!(counts.to_string(), "none");
        assert_eq!(counts.total(), 0);
        assert_eq!(counts.iter().count(), 0);

        for state in [
            TcpState::TimeWait,
            TcpState::Established,
            TcpState::Established,
            TcpState::Established,
            TcpState::CloseWait,
            TcpState::NewSynRecv,
        ] {
            counts.add(state);
        }
        assert_eq!(counts.established(), 3);
        assert_eq!(counts.time_wait(), 1);
        assert_eq!(counts.close_wait(), 1);
        assert_eq!(counts.get(TcpState::Listen), 0);
        assert_eq!(counts.get(TcpState::NewSynRecv), 1);
        assert_eq!(counts.total(), 6);
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            [
                (TcpState::Established, 3),
                (TcpState::TimeWait, 1),
                (TcpState::CloseWait, 1),
                (TcpState::NewSynRecv, 1),
            ]
        );
        assert_eq!(
            counts.to_string(),
            "ESTABLISHED=3 TIME_WAIT=1 CLOSE_WAIT=1 NEW_SYN_RECV=1"
        );
    }

    #[test]
    #[cfg(not(target_os = "linux"))]
    fn unsupported_elsewhere() {
        assert_eq!(sockets().unwrap_err().kind(), io::ErrorKind::Unsupported);
        assert_eq!(
            count(Filter::new()).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn real_sockets_go_through_close_wait_and_time_wait() {
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::time::{Duration, Instant};

        /// Polls `count(filter)` every 10 ms until `done` holds, for at most 5 s.
        fn wait_for(
            what: &str,
            filter: Filter,
            done: impl Fn(&StateCounts) -> bool,
        ) -> StateCounts {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let counts = count(filter).unwrap();
                if done(&counts) {
                    return counts;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}: {filter:?} shows {counts}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(peer.port(), client_port);

        let server_side = Filter::new().local_port(port).remote_port(client_port);
        let client_side = Filter::new().local_port(client_port).remote_port(port);

        // The listener (remote port 0) and the server's end of the connection.
        let on_port = count(Filter::new().local_port(port)).unwrap();
        assert!(on_port.get(TcpState::Listen) >= 1, "{on_port}");
        assert_eq!(on_port.established(), 1, "{on_port}");
        let listening = count(Filter::new().local_port(port).remote_port(0)).unwrap();
        assert_eq!(listening.get(TcpState::Listen), 1, "{listening}");
        let server_counts = count(server_side).unwrap();
        assert_eq!(server_counts.established(), 1, "{server_counts}");
        assert_eq!(server_counts.total(), 1, "{server_counts}");
        let by_ip = count(server_side.local_ip(Ipv4Addr::LOCALHOST.into())).unwrap();
        assert_eq!(by_ip.established(), 1, "{by_ip}");
        let client_counts = count(client_side).unwrap();
        assert_eq!(client_counts.established(), 1, "{client_counts}");
        assert!(sockets()
            .unwrap()
            .iter()
            .any(|e| e.local == server.local_addr().unwrap()
                && e.remote == client.local_addr().unwrap()
                && e.state == TcpState::Established));

        // The client closes first: the server's end goes to CLOSE_WAIT.
        client.shutdown(Shutdown::Both).unwrap();
        drop(client);
        let counts = wait_for("server CLOSE_WAIT", server_side, |c| c.close_wait() == 1);
        assert_eq!(counts.total(), 1, "{counts}");

        // Then the server closes: its end goes away (LAST_ACK, then gone) and the client's
        // end, which closed first, goes from FIN_WAIT2 to TIME_WAIT.
        drop(server);
        let counts = wait_for("client TIME_WAIT", client_side, |c| c.time_wait() == 1);
        assert_eq!(counts.total(), 1, "{counts}");
        let counts = wait_for("server end gone", server_side, |c| c.total() == 0);
        assert_eq!(counts.close_wait(), 0, "{counts}");

        // The listener is untouched.
        let listening = count(Filter::new().local_port(port).remote_port(0)).unwrap();
        assert_eq!(listening.get(TcpState::Listen), 1, "{listening}");
        drop(listener);
    }
}
