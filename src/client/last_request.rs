//! The last request a server allows on a connection: sent, or not, and who closes then.

use std::any::Any;

use tokio::net::TcpStream;

/// What the client does with the last request a server allows on a connection: the one after
/// a response that says `Keep-Alive: max=1`. The server answers it with `Connection: close`;
/// Apache httpd then closes at once, before the client, and keeps the connection's TIME_WAIT,
/// while the crate's own server waits for the client's FIN. Closing instead of sending it puts
/// TIME_WAIT on the client, at the cost of one request in every M+1 (`MaxKeepAliveRequests M`)
/// moved to a new connection. Against Apache with `MaxKeepAliveRequests 20`, sending it left
/// TIME_WAIT on Apache for 84 % of the connections, `Learn` for 1 in 5,520, with 5 % more
/// connections; against the crate's server `Learn` cost nothing and `CloseInstead` 5.3 % more
/// connections (BENCHMARKS.md, "Interop").
///
/// Set with [`ClientConfig::last_allowed_request`](super::ClientConfig::last_allowed_request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LastAllowedRequest {
    /// Always send it: every connection carries every request the server allows.
    Send,
    /// Never send it: close the connection after the response that says `max=1`.
    CloseInstead,
    /// Send it until the host is seen closing first after a `Connection: close` answer (its
    /// FIN already in when the client closes, read from the kernel's `TCP_INFO`; Linux only,
    /// elsewhere this is [`Send`](Self::Send)); from then on close instead for that host.
    /// The host is remembered by the pool for the client's life.
    #[default]
    Learn,
}

/// Whether the server closed `io` first: its FIN has arrived while the client's end is still
/// open (the kernel holds it in CLOSE_WAIT). Known for the crate's plain TCP connections and,
/// with the feature `rustls`, for TLS over them; `false` for other connection types.
pub(crate) fn server_closed_first<T: 'static>(io: &T) -> bool {
    tcp_of(io).is_some_and(crate::socket::peer_closed_first)
}

/// The TCP socket under a connection of a type the crate makes.
fn tcp_of<T: 'static>(io: &T) -> Option<&TcpStream> {
    let any: &dyn Any = io;
    if let Some(tcp) = any.downcast_ref::<TcpStream>() {
        return Some(tcp);
    }
    #[cfg(feature = "rustls")]
    if let Some(tls) = any.downcast_ref::<super::tls::MaybeTls<TcpStream>>() {
        return Some(match tls {
            super::tls::MaybeTls::Plain(tcp) => tcp,
            super::tls::MaybeTls::Tls(stream) => stream.get_ref().0,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sees_the_peer_close_first_only_once_its_fin_is_in() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(!server_closed_first(&client));
        assert!(!server_closed_first(&"not a socket"));
        drop(server);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !server_closed_first(&client) {
            assert!(std::time::Instant::now() < deadline, "the FIN never showed");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}
