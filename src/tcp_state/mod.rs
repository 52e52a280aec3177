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

// This file is the reader's face: which sockets (`SocketEntry`, `Filter`), and `count`, which
// asks `sock_diag` (netlink, Linux only) and falls back on `proc` (the /proc/net/tcp tables and
// their parser). `state` names the TCP states and counts sockets by state. The children import
// only from here, never from each other.

mod proc;
#[cfg(target_os = "linux")]
mod sock_diag;
mod state;

pub use proc::{count_proc, parse_proc_net_tcp, sockets};
pub use state::{StateCounts, TcpState};

use std::io;
use std::net::{IpAddr, SocketAddr};

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
enum Side {
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

/// An IPv4-mapped IPv6 address as IPv4, anything else unchanged (both readers report
/// addresses this way).
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(super) fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    pub(super) fn entry(local: &str, remote: &str, state: TcpState) -> SocketEntry {
        SocketEntry {
            local: addr(local),
            remote: addr(remote),
            state,
            keepalive_timer: None,
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

        // (Every filter names the address too: on a machine with tens of thousands of sockets
        // on other loopback addresses, a port number alone matches theirs as well.)
        let here = Filter::new().local_ip(Ipv4Addr::LOCALHOST.into());
        let server_side = here.local_port(port).remote_port(client_port);
        let client_side = here.local_port(client_port).remote_port(port);

        // The listener (remote port 0) and the server's end of the connection.
        let on_port = count(here.local_port(port)).unwrap();
        assert!(on_port.get(TcpState::Listen) >= 1, "{on_port}");
        assert_eq!(on_port.established(), 1, "{on_port}");
        let listening = count(here.local_port(port).remote_port(0)).unwrap();
        assert_eq!(listening.get(TcpState::Listen), 1, "{listening}");
        let server_counts = count(server_side).unwrap();
        assert_eq!(server_counts.established(), 1, "{server_counts}");
        assert_eq!(server_counts.total(), 1, "{server_counts}");
        let by_ip = count(
            Filter::new()
                .local_port(port)
                .remote_port(client_port)
                .local_ip(Ipv4Addr::LOCALHOST.into()),
        )
        .unwrap();
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
        let listening = count(here.local_port(port).remote_port(0)).unwrap();
        assert_eq!(listening.get(TcpState::Listen), 1, "{listening}");
        drop(listener);
    }
}
