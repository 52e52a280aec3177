//! A self-signed certificate made at start (rcgen) and the rustls configurations that serve
//! and trust it, for the examples' and the tests' TLS runs. Shared by both (the tests include
//! this file by path).
#![allow(dead_code, unreachable_pub)] // each user takes a different part

use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, RootCertStore};

/// A server certificate for `localhost`, `127.0.0.1`, `::1` and any names given, and
/// configurations for both ends.
#[derive(Clone)]
pub struct TestTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl TestTls {
    /// A fresh self-signed certificate. HTTP/1.1 is the only protocol either end offers.
    pub fn new() -> TestTls {
        Self::with_names(&[])
    }

    /// The same, valid for these host names or IP addresses too.
    pub fn with_names(extra: &[String]) -> TestTls {
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend_from_slice(extra);
        let certified =
            rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("the certificate matches its key");
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = RootCertStore::empty();
        roots.add(cert).expect("a valid certificate");
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        TestTls {
            server: Arc::new(server),
            client: Arc::new(client),
        }
    }

    /// The server side as a keepalive handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// A bare tokio-rustls client connector that trusts the certificate.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }
}

/// A plain hyper HTTP/1 server over tokio-rustls (the peer the crate's TLS server is compared
/// with): one task per connection, keep-alive on, no limits of its own.
pub async fn serve_plain_tls<S, B, F>(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    mut service_for: F,
) where
    F: FnMut() -> S,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service_for();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
