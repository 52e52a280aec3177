//! Socket options shared by the server and the client.
//!
//! Both ends of a keep-alive connection want the same things from the kernel: TCP keepalive
//! probes so a peer that vanished without a FIN is found (`SO_KEEPALIVE`, `TCP_KEEPIDLE`,
//! `TCP_KEEPINTVL`, `TCP_KEEPCNT`), `TCP_NODELAY` so small responses are not held back by
//! Nagle's algorithm, and optionally `TCP_USER_TIMEOUT` (Linux) so a connection whose sent
//! data stays unacknowledged is dropped (keepalive probes are not sent while data is
//! unacknowledged, so keepalive alone never ends such a connection).
//!
//! Options are best effort: a failure is logged with `warn!` and the connection carries on.
//!
//! ```
//! use keepalive::SocketOptions;
//! use std::time::Duration;
//!
//! let options = SocketOptions::new()
//!     .keepalive_time(Duration::from_secs(30))
//!     .keepalive_retries(3)
//!     .nodelay(true);
//! # let _ = options;
//! ```

use std::io;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// TCP socket options applied to every accepted (server) or connected (client) socket.
///
/// Defaults: keepalive on with 60 s idle time, 10 s interval and 5 retries, `TCP_NODELAY` on,
/// no `TCP_USER_TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    keepalive: Option<KeepaliveProbes>,
    nodelay: bool,
    user_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeepaliveProbes {
    time: Duration,
    interval: Duration,
    retries: u32,
}

impl Default for KeepaliveProbes {
    fn default() -> Self {
        KeepaliveProbes {
            time: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            retries: 5,
        }
    }
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            keepalive: Some(KeepaliveProbes::default()),
            nodelay: true,
            user_timeout: None,
        }
    }
}

impl SocketOptions {
    /// The defaults: see [`SocketOptions`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns TCP keepalive probes (`SO_KEEPALIVE`) on or off.
    ///
    /// Default is on.
    pub fn keepalive(mut self, on: bool) -> Self {
        self.keepalive = on.then(|| self.keepalive.unwrap_or_default());
        self
    }

    /// Idle time before the first keepalive probe (`TCP_KEEPIDLE`, `TCP_KEEPALIVE` on macOS).
    /// Turns keepalive on.
    ///
    /// Default is 60 s.
    pub fn keepalive_time(mut self, time: Duration) -> Self {
        self.keepalive.get_or_insert_with(Default::default).time = time;
        self
    }

    /// Time between unanswered keepalive probes (`TCP_KEEPINTVL`). Turns keepalive on.
    /// Ignored where the platform has no such option.
    ///
    /// Default is 10 s.
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive.get_or_insert_with(Default::default).interval = interval;
        self
    }

    /// Unanswered probes before the kernel drops the connection (`TCP_KEEPCNT`). Turns
    /// keepalive on. Ignored where the platform has no such option (Windows).
    ///
    /// Default is 5.
    pub fn keepalive_retries(mut self, retries: u32) -> Self {
        self.keepalive.get_or_insert_with(Default::default).retries = retries;
        self
    }

    /// Sets `TCP_NODELAY`.
    ///
    /// Default is on.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Sets `TCP_USER_TIMEOUT` (Linux only; ignored elsewhere): how long sent data may stay
    /// unacknowledged before the kernel drops the connection. `None` leaves the kernel default.
    ///
    /// Default is `None`.
    pub fn user_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.user_timeout = timeout;
        self
    }

    /// Configures hyper-util's connector with these options (it applies them through socket2
    /// on every connected socket).
    pub(crate) fn configure_connector<R>(
        &self,
        connector: &mut hyper_util::client::legacy::connect::HttpConnector<R>,
    ) {
        connector.set_nodelay(self.nodelay);
        match self.keepalive {
            Some(probes) => {
                connector.set_keepalive(Some(probes.time));
                connector.set_keepalive_interval(Some(probes.interval));
                connector.set_keepalive_retries(Some(probes.retries));
            }
            None => connector.set_keepalive(None),
        }
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
        connector.set_tcp_user_timeout(self.user_timeout);
    }

    /// Applies the options to a connected socket. Each failure is logged with `warn!`; the
    /// first one is returned, but the caller may carry on with the connection.
    pub fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        let sock = SockRef::from(stream);
        let mut first_error = None;
        let mut note = |what: &'static str, result: io::Result<()>| {
            if let Err(error) = result {
                tracing::warn!(%error, option = what, "could not set socket option");
                first_error.get_or_insert(error);
            }
        };
        if self.nodelay {
            note("TCP_NODELAY", sock.set_tcp_nodelay(true));
        }
        if let Some(probes) = self.keepalive {
            note("SO_KEEPALIVE", sock.set_tcp_keepalive(&probes.to_socket2()));
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(timeout) = self.user_timeout {
            note("TCP_USER_TIMEOUT", sock.set_tcp_user_timeout(Some(timeout)));
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl KeepaliveProbes {
    fn to_socket2(self) -> TcpKeepalive {
        let keepalive = TcpKeepalive::new().with_time(self.time);
        #[cfg(not(any(target_os = "openbsd", target_os = "haiku", target_os = "windows")))]
        let keepalive = keepalive.with_retries(self.retries);
        #[cfg(not(any(target_os = "openbsd", target_os = "haiku")))]
        let keepalive = keepalive.with_interval(self.interval);
        keepalive
    }
}

/// Makes the next close of `stream` abortive: `SO_LINGER` with a zero timeout, so the kernel
/// sends a reset instead of a FIN and keeps no TIME_WAIT. Only for connections that are dead
/// anyway (timed out), like nginx's `reset_timedout_connection`.
pub fn set_abortive_close(stream: &TcpStream) -> io::Result<()> {
    SockRef::from(stream).set_linger(Some(Duration::ZERO))
}

/// The kernel's smoothed round-trip time for a connection (`TCP_INFO`'s `tcpi_rtt`).
///
/// `None` where the platform has no `TCP_INFO` (everything but Linux here) or the call fails.
pub fn smoothed_rtt(stream: &TcpStream) -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        linux_tcp_info(stream.as_raw_fd())
            .map(|info| Duration::from_micros(u64::from(info.tcpi_rtt)))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        None
    }
}

/// Whether the peer's FIN has reached this socket while this end is still open: the kernel
/// holds it in `CLOSE_WAIT` (`TCP_INFO`'s `tcpi_state`), so a close now leaves TIME_WAIT on
/// the peer. Unlike a read, it sees the FIN behind bytes not read yet and needs no runtime
/// wake-up. `false` where the platform has no `TCP_INFO` (everything but Linux here).
pub(crate) fn peer_closed_first(stream: &TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        use crate::tcp_state::TcpState;
        use std::os::fd::AsRawFd;
        let state = linux_tcp_info(stream.as_raw_fd()).map(|info| info.tcpi_state);
        state.and_then(TcpState::from_kernel) == Some(TcpState::CloseWait)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        false
    }
}

/// Reads the socket's `TCP_INFO` through `getsockopt`.
///
/// The one `unsafe` block of the crate: `getsockopt` writes at most `len` bytes into a
/// zeroed, properly aligned `libc::tcp_info` that lives on this stack frame, and the fd is
/// borrowed from a live `TcpStream`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn linux_tcp_info(fd: std::os::fd::RawFd) -> Option<libc::tcp_info> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: see the function's doc comment.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: zero-initialised and partly written by the kernel: every bit pattern is a valid
    // tcp_info (plain integers).
    Some(unsafe { info.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn applies_options_to_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let options = SocketOptions::new()
            .keepalive_time(Duration::from_secs(42))
            .keepalive_interval(Duration::from_secs(7))
            .keepalive_retries(3)
            .user_timeout(Some(Duration::from_secs(9)));
        options.apply(&server).unwrap();
        let sock = SockRef::from(&server);
        assert!(sock.tcp_nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        {
            assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(42));
            assert_eq!(
                sock.tcp_keepalive_interval().unwrap(),
                Duration::from_secs(7)
            );
            assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
            assert_eq!(
                sock.tcp_user_timeout().unwrap(),
                Some(Duration::from_secs(9))
            );
            assert!(smoothed_rtt(&server).is_some());
        }
        SocketOptions::new()
            .keepalive(false)
            .apply(&client)
            .unwrap();
        assert!(!SockRef::from(&client).keepalive().unwrap());
    }
}
