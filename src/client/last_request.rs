//! Who closed first after the last request a server allows (its `Connection: close`
//! answer), for [`LastAllowedRequest::Learn`](super::LastAllowedRequest::Learn).

use std::any::Any;

use tokio::net::TcpStream;

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
