//! The client against real servers (`benches/interop.sh` starts them and drives this): the
//! crate's client, hyper-util's legacy client and reqwest, one JSON line per run on stdout.
//!
//! - `probe`: one raw request with `Connection: keep-alive`; what the server advertises.
//! - `load`: `--duration` of back-to-back GETs on `--concurrency` workers: requests, errors,
//!   connections opened against what the server's limit per connection forces, and which side
//!   holds the TIME_WAIT of the connections closed.
//! - `gaps`: `--requests` GETs one at a time, `--gap` apart (just under or just over the
//!   server's idle timeout): failed requests, TIME_WAIT on each side, and how long the client
//!   keeps a socket in CLOSE_WAIT after the server closes it (each socket of the run looked up
//!   in the kernel every 100 µs through the whole run).
//!
//! Every run binds the client's sockets to its own `--source-ip` (any 127.0.0.0/8 address), so
//! the kernel's view of one run never mixes with another's. Connections opened are counted at
//! the client (the crate's stats; a counting connector for hyper-util and reqwest). TIME_WAIT
//! on the client's side is the kernel's count (a client port in TIME_WAIT is not bound again);
//! on the server's side it is the connections closed (opened, less those the client still has
//! open) that left no TIME_WAIT on the client, or the kernel's count there
//! (`server_time_wait_seen`) when larger (both sides hold one after a simultaneous close): the
//! kernel's count alone misses those whose client port was bound again for a new connection
//! while the server held its TIME_WAIT, which the new connection then replaced.
//! Counted after a settle of at most `--settle` (no socket of the run in a closing state),
//! before the client is dropped.
//!
//! ```text
//! cargo build --release --example interop_client
//! target/release/examples/interop_client probe --url http://127.0.0.21:8080/hello.txt
//! target/release/examples/interop_client load --url http://127.0.0.21:8080/hello.txt \
//!     --client keepalive --source-ip 127.3.0.1 --label apache --per-connection 21
//! target/release/examples/interop_client gaps --url http://127.0.0.21:8080/hello.txt \
//!     --client reqwest --source-ip 127.3.0.2 --label apache --gap 2100ms
//! ```

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keepalive::client::{Client, ClientConfig, ClientStatsSnapshot, LastAllowedRequest};
use keepalive::tcp_state::{self, SocketEntry, TcpState};
use serde_json::{json, Value};
use support::parse_duration;

#[derive(Parser, Debug)]
#[command(about = "the crate's client, hyper-util and reqwest against a real server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One raw GET with `Connection: keep-alive`: the answer's Connection and Keep-Alive.
    Probe {
        #[arg(long)]
        url: Uri,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Back-to-back GETs on several workers for a while.
    Load {
        #[command(flatten)]
        run: RunArgs,
        /// How long the load runs (at most 60 s).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Requests in flight at once (at most 64).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// The most requests the server serves on one connection (`None`: no limit), to
        /// compute the connections its limit forces.
        #[arg(long)]
        per_connection: Option<u64>,
    },
    /// GETs one at a time with an idle gap between them.
    Gaps {
        #[command(flatten)]
        run: RunArgs,
        /// The idle time between a response and the next request (at most 30 s).
        #[arg(long, value_parser = parse_duration)]
        gap: Duration,
        /// Requests (at most 100).
        #[arg(long, default_value_t = 6)]
        requests: usize,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    #[arg(long)]
    url: Uri,
    #[arg(long, value_enum)]
    client: ClientKind,
    /// The address the client's sockets are bound to (its own per run).
    #[arg(long)]
    source_ip: Ipv4Addr,
    /// The server's name in the output.
    #[arg(long, default_value = "")]
    label: String,
    /// The crate's client only: what it does with the last request a server allows.
    #[arg(long, value_enum, default_value_t = Policy::Learn)]
    last_request: Policy,
    /// The longest wait, after the run, for the run's sockets to leave the closing states.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    settle: Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ClientKind {
    Keepalive,
    HyperUtil,
    Reqwest,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Policy {
    Send,
    CloseInstead,
    Learn,
}

impl Policy {
    fn setting(self) -> LastAllowedRequest {
        match self {
            Policy::Send => LastAllowedRequest::Send,
            Policy::CloseInstead => LastAllowedRequest::CloseInstead,
            Policy::Learn => LastAllowedRequest::Learn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Policy::Send => "send",
            Policy::CloseInstead => "close-instead",
            Policy::Learn => "learn",
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let line = match cli.command {
        Cmd::Probe { url, label } => probe(&url, &label),
        Cmd::Load {
            run,
            duration,
            concurrency,
            per_connection,
        } => runtime.block_on(load(
            &run,
            duration.min(Duration::from_secs(60)),
            concurrency.clamp(1, 64),
            per_connection,
        )),
        Cmd::Gaps { run, gap, requests } => runtime.block_on(gaps(
            &run,
            gap.min(Duration::from_secs(30)),
            requests.clamp(1, 100),
        )),
    };
    println!("{line}");
}

// ---------------------------------------------------------------------------------------------
// Clients

/// The three clients behind one `get`, each bound to the run's source address, with the
/// connections each opened (its connector's calls; the crate's client counts its own).
struct AnyClient {
    kind: Kinds,
    connects: Arc<AtomicU64>,
}

enum Kinds {
    Keepalive(Client<SourceConnector>),
    HyperUtil(Box<hyper_util::client::legacy::Client<Counted<HttpConnector>, Empty<Bytes>>>),
    Reqwest(reqwest::Client),
}

/// A connector that counts its calls (the connections a client opens; the kernel's view
/// cannot tell them all apart: a client port whose TIME_WAIT is on the server's side may be
/// bound again at once, and the new connection takes the old one's place there).
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    connects: Arc<AtomicU64>,
}

impl<S: tower::Service<R>, R> tower::Service<R> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// [`Counted`] as a layer (for reqwest's `connector_layer`).
#[derive(Clone)]
struct CountLayer(Arc<AtomicU64>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            connects: self.0.clone(),
        }
    }
}

/// The crate's client's connector for this program: TCP from the run's source address, with
/// the crate's socket options (`TCP_NODELAY` and keepalive).
#[derive(Clone)]
struct SourceConnector {
    source: IpAddr,
}

impl tower::Service<Uri> for SourceConnector {
    type Response = tokio::net::TcpStream;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<tokio::net::TcpStream>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let source = self.source;
        Box::pin(async move {
            let target = server_addr(&uri)?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(target).await?;
            keepalive::SocketOptions::default().apply(&stream)?;
            Ok(stream)
        })
    }
}

/// The address of the URI's host and port (IPv4 only, as every server here listens).
fn server_addr(uri: &Uri) -> std::io::Result<SocketAddr> {
    let host = uri.host().unwrap_or("127.0.0.1");
    let port = uri.port_u16().unwrap_or(80);
    (host, port)
        .to_socket_addrs()?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| std::io::Error::other("no IPv4 address"))
}

impl AnyClient {
    fn new(kind: ClientKind, source: Ipv4Addr, policy: Policy) -> AnyClient {
        let source = IpAddr::V4(source);
        let connects = Arc::new(AtomicU64::new(0));
        let kind = match kind {
            ClientKind::Keepalive => Kinds::Keepalive(Client::with_connector(
                ClientConfig::new().last_allowed_request(policy.setting()),
                SourceConnector { source },
            )),
            ClientKind::HyperUtil => {
                let mut connector = HttpConnector::new();
                connector.set_local_address(Some(source));
                connector.set_nodelay(true);
                let connector = Counted {
                    inner: connector,
                    connects: connects.clone(),
                };
                Kinds::HyperUtil(Box::new(
                    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                        .build(connector),
                ))
            }
            ClientKind::Reqwest => Kinds::Reqwest(
                reqwest::Client::builder()
                    .local_address(source)
                    .connector_layer(CountLayer(connects.clone()))
                    .build()
                    .expect("reqwest client"),
            ),
        };
        AnyClient { kind, connects }
    }

    fn stats(&self) -> Option<ClientStatsSnapshot> {
        match &self.kind {
            Kinds::Keepalive(client) => Some(client.stats().snapshot()),
            _ => None,
        }
    }

    /// Connections opened.
    fn opened(&self) -> u64 {
        match self.stats() {
            Some(stats) => stats.opened,
            None => self.connects.load(Ordering::Relaxed),
        }
    }

    /// GET `uri` and read the body to its end; the error text has its whole chain.
    async fn get(&self, uri: &Uri) -> Result<Bytes, String> {
        let empty = || {
            Request::get(uri.clone())
                .body(Empty::<Bytes>::new())
                .map_err(|e| error_chain(&e))
        };
        match &self.kind {
            Kinds::Keepalive(client) => {
                let response = client
                    .request(empty()?)
                    .await
                    .map_err(|e| format!("request: {}", error_chain(&e)))?;
                let body = response.into_body().collect().await;
                Ok(body
                    .map_err(|e| format!("body: {}", error_chain(&e)))?
                    .to_bytes())
            }
            Kinds::HyperUtil(client) => {
                let response = client
                    .request(empty()?)
                    .await
                    .map_err(|e| format!("request: {}", error_chain(&e)))?;
                let body = response.into_body().collect().await;
                Ok(body
                    .map_err(|e| format!("body: {}", error_chain(&e)))?
                    .to_bytes())
            }
            Kinds::Reqwest(client) => {
                let response = client
                    .get(uri.to_string())
                    .send()
                    .await
                    .map_err(|e| format!("request: {}", error_chain(&e)))?;
                response
                    .bytes()
                    .await
                    .map_err(|e| format!("body: {}", error_chain(&e)))
            }
        }
    }
}

/// An error and its sources, without repeating text a `Display` already includes.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let more = source.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = source.source();
    }
    text
}

/// Failed requests by error text.
#[derive(Default)]
struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    fn add(&self, error: String) {
        let mut map = self.0.lock().unwrap();
        // A bounded map: one entry per distinct text, at most 20.
        if map.len() < 20 || map.contains_key(&error) {
            *map.entry(error).or_default() += 1;
        } else {
            *map.entry("(other)".into()).or_default() += 1;
        }
    }

    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }

    fn json(&self) -> Value {
        json!(*self.0.lock().unwrap())
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel's view of a run

/// The run's sockets, on both sides: the server's ends (local = the server, peer = the source
/// address) and the client's (local address = the source address, peer = the server).
#[derive(Default)]
struct Census {
    client_ports: BTreeSet<u16>,
    server_side: BTreeMap<&'static str, usize>,
    client_side: BTreeMap<&'static str, usize>,
}

impl Census {
    fn take(server: SocketAddr, source: IpAddr) -> Census {
        let mut census = Census::default();
        let entries: Vec<SocketEntry> = tcp_state::sockets().unwrap_or_default();
        for entry in entries {
            if entry.local == server && entry.remote.ip() == source {
                census.client_ports.insert(entry.remote.port());
                *census.server_side.entry(entry.state.name()).or_default() += 1;
            } else if entry.local.ip() == source && entry.remote == server {
                census.client_ports.insert(entry.local.port());
                *census.client_side.entry(entry.state.name()).or_default() += 1;
            }
        }
        census
    }

    fn count(side: &BTreeMap<&'static str, usize>, state: TcpState) -> usize {
        side.get(state.name()).copied().unwrap_or(0)
    }

    /// Sockets of the run still closing (a FIN sent or received, not yet done).
    fn closing(&self) -> usize {
        [&self.server_side, &self.client_side]
            .iter()
            .map(|side| {
                [
                    TcpState::FinWait1,
                    TcpState::FinWait2,
                    TcpState::CloseWait,
                    TcpState::LastAck,
                    TcpState::Closing,
                ]
                .iter()
                .map(|&state| Self::count(side, state))
                .sum::<usize>()
            })
            .sum()
    }

    /// Waits (at most `settle`) until no socket of the run is closing, and counts then.
    async fn settled(server: SocketAddr, source: IpAddr, settle: Duration) -> (Census, bool) {
        let deadline = Instant::now() + settle;
        loop {
            let census = Census::take(server, source);
            let settled = census.closing() == 0;
            if settled || Instant::now() >= deadline {
                return (census, settled);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The figures of the run, `opened` being the connections the client opened: those not
    /// open any more and not in TIME_WAIT on the client's side left theirs on the server's
    /// (the kernel's count there is a lower bound, see [`Counted`]).
    fn fields(&self, opened: u64, out: &mut serde_json::Map<String, Value>) {
        let client_time_wait = Self::count(&self.client_side, TcpState::TimeWait);
        let client_open = self.client_side.values().sum::<usize>() - client_time_wait;
        let closed = opened.saturating_sub(client_open as u64);
        out.insert("opened".into(), json!(opened));
        out.insert("opened_ports".into(), json!(self.client_ports.len()));
        out.insert("closed".into(), json!(closed));
        // (Both sides hold one after a simultaneous close: the kernel's count may be the
        // larger.)
        let seen = Self::count(&self.server_side, TcpState::TimeWait) as u64;
        let inferred = closed.saturating_sub(client_time_wait as u64);
        out.insert("server_time_wait".into(), json!(inferred.max(seen)));
        out.insert("server_time_wait_seen".into(), json!(seen));
        out.insert("client_time_wait".into(), json!(client_time_wait));
        out.insert("server_states".into(), json!(self.server_side));
        out.insert("client_states".into(), json!(self.client_side));
    }
}

/// Watches the client's sockets to the server on a thread of its own and times how long each
/// stays in CLOSE_WAIT (the server's FIN in, the client's end not closed yet). The run's
/// sockets are listed from /proc/net/tcp every 20 ms; each one listed is then looked up by its
/// address pair through `sock_diag` every 100 µs (one hash lookup in the kernel, no walk of the
/// socket table, which takes milliseconds), so a stretch is timed to about 0.1 ms: from the
/// first look that finds the socket in CLOSE_WAIT to the first that finds it elsewhere or gone.
struct CloseWaitWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<CloseWaitFigures>,
}

#[derive(Default)]
struct CloseWaitFigures {
    /// Sockets seen in CLOSE_WAIT, the longest stretch, and the first 100 stretches, in
    /// microseconds.
    episodes: u64,
    longest_us: u64,
    stretches_us: Vec<u64>,
    /// A socket still in CLOSE_WAIT when the watch stopped.
    open_at_end: bool,
    /// Looks at one socket, and their total time.
    looks: u64,
    look_us: u64,
    /// Why the watch could not run, if it could not.
    unavailable: Option<String>,
}

impl CloseWaitWatch {
    fn start(server: SocketAddr, source: Ipv4Addr) -> CloseWaitWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut figures = CloseWaitFigures::default();
            let SocketAddr::V4(server) = server else {
                figures.unavailable = Some("an IPv6 server".into());
                return figures;
            };
            let mut lookup = match lookup::Lookup::new() {
                Ok(lookup) => lookup,
                Err(error) => {
                    figures.unavailable = Some(error.to_string());
                    return figures;
                }
            };
            // Each socket of the run, by its own end, with the first look that found it in
            // CLOSE_WAIT.
            let mut known: BTreeMap<SocketAddrV4, Option<Instant>> = BTreeMap::new();
            let mut next_listing = Instant::now();
            // Bounded: stops when told, or after 10 minutes.
            let give_up = Instant::now() + Duration::from_secs(600);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < give_up {
                if Instant::now() >= next_listing {
                    for entry in tcp_state::sockets().unwrap_or_default() {
                        let (SocketAddr::V4(local), true) =
                            (entry.local, entry.remote == SocketAddr::V4(server))
                        else {
                            continue;
                        };
                        if *local.ip() == source
                            && matches!(entry.state, TcpState::Established | TcpState::CloseWait)
                        {
                            known.entry(local).or_insert(None);
                        }
                    }
                    next_listing = Instant::now() + Duration::from_millis(20);
                }
                known.retain(|&local, since| {
                    let before = Instant::now();
                    let state = lookup.state(local, server).ok().flatten();
                    let now = Instant::now();
                    figures.looks += 1;
                    figures.look_us += (now - before).as_micros() as u64;
                    if state == Some(TcpState::CloseWait) {
                        since.get_or_insert(now);
                        return true;
                    }
                    if let Some(start) = since.take() {
                        let stretch = (now - start).as_micros() as u64;
                        figures.episodes += 1;
                        figures.longest_us = figures.longest_us.max(stretch);
                        if figures.stretches_us.len() < 100 {
                            figures.stretches_us.push(stretch);
                        }
                    }
                    state == Some(TcpState::Established)
                });
                std::thread::sleep(Duration::from_micros(100));
            }
            for since in known.values().flatten() {
                figures.episodes += 1;
                figures.open_at_end = true;
                figures.longest_us = figures.longest_us.max(since.elapsed().as_micros() as u64);
            }
            figures
        });
        CloseWaitWatch { stop, thread }
    }

    fn finish(self) -> CloseWaitFigures {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One TCP socket's state by its address pair, through netlink `sock_diag` (an exact lookup:
/// `inet_diag_req_v2` with the socket's id filled in, no dump).
#[cfg(target_os = "linux")]
mod lookup {
    use std::io::{self, Read as _};
    use std::net::SocketAddrV4;

    use keepalive::tcp_state::TcpState;
    use socket2::{Domain, Protocol, Socket, Type};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;

    pub(super) struct Lookup {
        socket: Socket,
        seq: u32,
        buf: Vec<u8>,
    }

    impl Lookup {
        pub(super) fn new() -> io::Result<Lookup> {
            let socket = Socket::new(
                Domain::from(libc::AF_NETLINK),
                Type::DGRAM,
                Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
            )?;
            Ok(Lookup {
                socket,
                seq: 0,
                buf: vec![0; 8192],
            })
        }

        /// The state of the IPv4 socket whose own end is `local` and whose peer is `remote`;
        /// `None` when there is none.
        pub(super) fn state(
            &mut self,
            local: SocketAddrV4,
            remote: SocketAddrV4,
        ) -> io::Result<Option<TcpState>> {
            self.seq = self.seq.wrapping_add(1);
            let mut message = Vec::with_capacity(72);
            message.extend_from_slice(&72u32.to_ne_bytes());
            message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
            message.extend_from_slice(&self.seq.to_ne_bytes());
            message.extend_from_slice(&0u32.to_ne_bytes());
            // inet_diag_req_v2: family, protocol, extensions, padding, states; then the socket
            // id: ports (network order), addresses (16 bytes each), interface, no cookie.
            message.extend_from_slice(&[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
            message.extend_from_slice(&u32::MAX.to_ne_bytes());
            message.extend_from_slice(&local.port().to_be_bytes());
            message.extend_from_slice(&remote.port().to_be_bytes());
            for ip in [local.ip(), remote.ip()] {
                let mut address = [0u8; 16];
                address[..4].copy_from_slice(&ip.octets());
                message.extend_from_slice(&address);
            }
            message.extend_from_slice(&0u32.to_ne_bytes());
            message.extend_from_slice(&[0xff; 8]);
            self.socket.send(&message)?;
            // Bounded: answers to older requests are skipped, at most 16 reads.
            for _ in 0..16 {
                let n = (&self.socket).read(&mut self.buf)?;
                let mut rest = &self.buf[..n];
                while rest.len() >= 16 {
                    let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                    let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                    let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                    if len < 16 || len > rest.len() {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated"));
                    }
                    let payload = &rest[16..len];
                    if seq == self.seq {
                        match kind {
                            NLMSG_ERROR => {
                                let code = payload
                                    .get(..4)
                                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                                return match -code {
                                    0 | libc::ENOENT => Ok(None),
                                    errno => Err(io::Error::from_raw_os_error(errno)),
                                };
                            }
                            NLMSG_DONE => return Ok(None),
                            SOCK_DIAG_BY_FAMILY => {
                                return Ok(payload.get(1).copied().and_then(TcpState::from_kernel))
                            }
                            _ => {}
                        }
                    }
                    rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
                }
            }
            Ok(None)
        }
    }
}

/// No exact lookup outside Linux: the watch reports itself unavailable.
#[cfg(not(target_os = "linux"))]
mod lookup {
    use std::io;
    use std::net::SocketAddrV4;

    use keepalive::tcp_state::TcpState;

    pub(super) struct Lookup;

    impl Lookup {
        pub(super) fn new() -> io::Result<Lookup> {
            Err(io::Error::new(io::ErrorKind::Unsupported, "Linux only"))
        }

        pub(super) fn state(
            &mut self,
            _: SocketAddrV4,
            _: SocketAddrV4,
        ) -> io::Result<Option<TcpState>> {
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// The fields every run reports.
fn header(scenario: &str, run: &RunArgs) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("scenario".into(), json!(scenario));
    out.insert("label".into(), json!(run.label));
    out.insert(
        "client".into(),
        json!(match run.client {
            ClientKind::Keepalive => "keepalive",
            ClientKind::HyperUtil => "hyper-util",
            ClientKind::Reqwest => "reqwest",
        }),
    );
    if run.client == ClientKind::Keepalive {
        out.insert("policy".into(), json!(run.last_request.name()));
    }
    out.insert("url".into(), json!(run.url.to_string()));
    out.insert("source_ip".into(), json!(run.source_ip.to_string()));
    out
}

fn stats_fields(stats: Option<ClientStatsSnapshot>, out: &mut serde_json::Map<String, Value>) {
    let Some(stats) = stats else { return };
    let closes: BTreeMap<&str, u64> = keepalive::client::PoolCloseReason::ALL
        .iter()
        .map(|&reason| (reason.name(), stats.closed(reason)))
        .filter(|&(_, n)| n > 0)
        .collect();
    out.insert("opened_stats".into(), json!(stats.opened));
    out.insert("reused".into(), json!(stats.reused));
    out.insert("retries".into(), json!(stats.retries));
    out.insert("closes".into(), json!(closes));
}

async fn load(
    run: &RunArgs,
    duration: Duration,
    concurrency: usize,
    per_connection: Option<u64>,
) -> Value {
    let server = match server_addr(&run.url) {
        Ok(addr) => addr,
        Err(error) => return json!({"error": error.to_string()}),
    };
    let source = IpAddr::V4(run.source_ip);
    let client = Arc::new(AnyClient::new(run.client, run.source_ip, run.last_request));
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, requests, errors) = (client.clone(), requests.clone(), errors.clone());
            let uri = run.url.clone();
            tokio::spawn(async move {
                // Bounded in time and in count.
                for _ in 0..10_000_000u64 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    match client.get(&uri).await {
                        Ok(_) => {}
                        Err(error) => errors.add(error),
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let (census, settled) = Census::settled(server, source, run.settle).await;
    let requests = requests.load(Ordering::Relaxed);
    let mut out = header("load", run);
    out.insert("seconds".into(), json!((seconds * 100.0).round() / 100.0));
    out.insert("concurrency".into(), json!(concurrency));
    out.insert("requests".into(), json!(requests));
    out.insert("rps".into(), json!((requests as f64 / seconds).round()));
    out.insert("errors".into(), json!(errors.total()));
    out.insert("error_kinds".into(), errors.json());
    let opened = client.opened();
    census.fields(opened, &mut out);
    // The connections the server's limit forces: every worker needs one, and no connection
    // carries more than the limit.
    let forced = per_connection
        .filter(|&limit| limit > 0)
        .map_or(concurrency as u64, |limit| {
            requests.div_ceil(limit).max(concurrency as u64)
        });
    out.insert("per_connection_limit".into(), json!(per_connection));
    out.insert("forced".into(), json!(forced));
    out.insert("excess".into(), json!(opened as i64 - forced as i64));
    out.insert(
        "requests_per_connection".into(),
        json!(((requests as f64 / opened.max(1) as f64) * 100.0).round() / 100.0),
    );
    out.insert("settled".into(), json!(settled));
    stats_fields(client.stats(), &mut out);
    Value::Object(out)
}

async fn gaps(run: &RunArgs, gap: Duration, requests: usize) -> Value {
    let server = match server_addr(&run.url) {
        Ok(addr) => addr,
        Err(error) => return json!({"error": error.to_string()}),
    };
    let source = IpAddr::V4(run.source_ip);
    let client = AnyClient::new(run.client, run.source_ip, run.last_request);
    let errors = Errors::default();
    let watch = CloseWaitWatch::start(server, run.source_ip);
    let start = Instant::now();
    for i in 0..requests {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        if let Err(error) = client.get(&run.url).await {
            errors.add(error);
        }
    }
    // One more gap after the last request: the server's close of the last connection (or the
    // client's) happens inside the watch too.
    tokio::time::sleep(gap).await;
    let seconds = start.elapsed().as_secs_f64();
    let close_wait = watch.finish();
    let (census, settled) = Census::settled(server, source, run.settle).await;
    let mut out = header("gaps", run);
    out.insert("gap_ms".into(), json!(gap.as_millis() as u64));
    out.insert("seconds".into(), json!((seconds * 100.0).round() / 100.0));
    out.insert("requests".into(), json!(requests));
    out.insert("errors".into(), json!(errors.total()));
    out.insert("error_kinds".into(), errors.json());
    census.fields(client.opened(), &mut out);
    out.insert("settled".into(), json!(settled));
    out.insert("close_wait_episodes".into(), json!(close_wait.episodes));
    out.insert(
        "close_wait_longest_ms".into(),
        json!((close_wait.longest_us as f64 / 10.0).round() / 100.0),
    );
    out.insert(
        "close_wait_open_at_end".into(),
        json!(close_wait.open_at_end),
    );
    out.insert("close_wait_us".into(), json!(close_wait.stretches_us));
    out.insert(
        "close_wait_look_us".into(),
        json!((close_wait.look_us as f64 / close_wait.looks.max(1) as f64).round()),
    );
    out.insert(
        "close_wait_watch".into(),
        json!(close_wait.unavailable.unwrap_or_else(|| "ok".into())),
    );
    stats_fields(client.stats(), &mut out);
    Value::Object(out)
}

/// One raw request with `Connection: keep-alive`, and the answer's keep-alive headers.
fn probe(url: &Uri, label: &str) -> Value {
    let result = (|| -> std::io::Result<String> {
        let addr = server_addr(url)?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n",
            url.authority().map_or("localhost", |a| a.as_str())
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // Bounded: a head of at most 64 KiB.
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65_536 {
            if stream.read(&mut byte)? == 0 {
                break;
            }
            head.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&head).into_owned())
    })();
    let head = match result {
        Ok(head) => head,
        Err(error) => {
            return json!({"scenario": "probe", "label": label, "error": error.to_string()})
        }
    };
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    json!({
        "scenario": "probe",
        "label": label,
        "status_line": head.lines().next().unwrap_or(""),
        "server": header("server"),
        "connection": header("connection"),
        "keep_alive": header("keep-alive"),
    })
}
