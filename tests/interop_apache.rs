//! The client against Apache httpd, when Debian's `apache2` is installed (skipped with a note
//! otherwise): `MaxKeepAliveRequests 2` on a loopback address of its own, so each connection
//! answers `max=2`, `max=1`, then `Connection: close`, and Apache closes first after that last
//! answer. The short version of the last-request figures in BENCHMARKS.md ("Interop").
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keepalive::client::{Client, ClientConfig, LastAllowedRequest, PoolCloseReason};
use keepalive::tcp_state::{self, Filter};
use support::{fetch_ok, unique_loopback, wait_until, SOON};

const APACHE: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";

/// A running Apache httpd, stopped (SIGTERM, then SIGKILL) and its directory removed on drop.
struct Apache {
    child: Child,
    dir: PathBuf,
    addr: std::net::SocketAddr,
}

impl Apache {
    /// Apache with `MaxKeepAliveRequests max` serving `/hello.txt`, or `None` (with a note)
    /// when it is not installed or does not start.
    async fn start(max: u32) -> Option<Apache> {
        if !Path::new(APACHE).exists() || !Path::new(MODULES).join("mod_mpm_event.so").exists() {
            eprintln!("apache2 not installed: skipped");
            return None;
        }
        // A free port on an address of this test's own.
        let probe = std::net::TcpListener::bind((unique_loopback(), 0)).unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let dir = std::env::temp_dir().join(format!(
            "keepalive-apache-{}-{}",
            std::process::id(),
            addr.port()
        ));
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("hello.txt"), "hello, world!\n").unwrap();
        // Readable by whoever Apache's children run as.
        use std::os::unix::fs::PermissionsExt;
        for path in [&dir, &www] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            www.join("hello.txt"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let d = dir.display();
        let config = format!(
            "ServerRoot \"{d}\"\nServerName localhost\n\
             LoadModule mpm_event_module {MODULES}/mod_mpm_event.so\n\
             LoadModule authz_core_module {MODULES}/mod_authz_core.so\n\
             Listen {addr}\nPidFile \"{d}/httpd.pid\"\nDefaultRuntimeDir \"{d}\"\n\
             Mutex file:{d} default\nErrorLog \"{d}/error.log\"\nLogLevel crit\n\
             DocumentRoot \"{d}/www\"\n<Directory \"{d}/www\">\n    Require all granted\n</Directory>\n\
             KeepAlive On\nKeepAliveTimeout 5\nMaxKeepAliveRequests {max}\n"
        );
        std::fs::write(dir.join("httpd.conf"), config).unwrap();
        let child = Command::new(APACHE)
            .arg("-f")
            .arg(dir.join("httpd.conf"))
            .arg("-DFOREGROUND")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut apache = Apache { child, dir, addr };
        // Up to 10 s for it to accept.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Some(apache);
            }
            if apache.child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("apache2 did not start: skipped");
        drop(apache);
        None
    }

    fn url(&self) -> String {
        format!("http://{}/hello.txt", self.addr)
    }

    fn server_time_wait(&self) -> usize {
        let filter = Filter::new()
            .local_ip(self.addr.ip())
            .local_port(self.addr.port());
        tcp_state::count(filter).unwrap().time_wait()
    }

    fn client_time_wait(&self) -> usize {
        let filter = Filter::new()
            .remote_ip(self.addr.ip())
            .remote_port(self.addr.port());
        tcp_state::count(filter).unwrap().time_wait()
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        // SIGTERM lets the parent stop its children; SIGKILL if it has not within 5 s.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const REQUESTS: usize = 40;

/// The default learns that Apache closes first after its close answer, from the kernel, and
/// then closes after `max=1` itself: connections then carry 2 requests, and TIME_WAIT lands on
/// the client. Apache holds TIME_WAIT only for connections that got a close answer (those
/// before it was learned; the first, as a rule).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_default_learns_that_apache_closes_first() {
    let Some(apache) = Apache::start(2).await else {
        return;
    };
    let client = Client::new(ClientConfig::new());
    let url = apache.url();
    for _ in 0..REQUESTS {
        assert_eq!(fetch_ok(&client, &url).await, "hello, world!\n");
    }
    let stats = client.stats().snapshot();
    let answered_close = stats.closed(PoolCloseReason::ServerClose);
    let skipped_last = stats.closed(PoolCloseReason::MaxRequests);
    assert!(skipped_last > 0, "never learned: {}", stats.to_json());
    assert_eq!(stats.closed_total(), answered_close + skipped_last);
    assert_eq!(stats.opened, stats.closed_total() + stats.open);
    // Three requests on each connection that got the close answer, two on each closed after
    // `max=1`; the rest on the one still open.
    let rest = REQUESTS as u64 - (3 * answered_close + 2 * skipped_last);
    let rest_fits = match stats.open {
        0 => rest == 0,
        1 => (1..=2).contains(&rest),
        _ => false,
    };
    assert!(rest_fits, "{rest} requests left over: {}", stats.to_json());
    wait_until(
        "every closed connection in TIME_WAIT on one side",
        SOON,
        || (apache.server_time_wait() + apache.client_time_wait()) as u64 >= stats.closed_total(),
    )
    .await;
    assert!(
        apache.server_time_wait() as u64 <= answered_close,
        "Apache holds {} TIME_WAIT for {} close answers",
        apache.server_time_wait(),
        answered_close
    );
    assert!(apache.client_time_wait() as u64 >= skipped_last);
}

/// `Send` sends every request Apache allows: 3 per connection, each ended by Apache's close
/// answer.
#[tokio::test]
async fn send_carries_three_requests_per_apache_connection() {
    let Some(apache) = Apache::start(2).await else {
        return;
    };
    let client = Client::new(ClientConfig::new().last_allowed_request(LastAllowedRequest::Send));
    let url = apache.url();
    for _ in 0..REQUESTS {
        assert_eq!(fetch_ok(&client, &url).await, "hello, world!\n");
    }
    let stats = client.stats().snapshot();
    // 40 = 13 x 3 + 1: the last connection is still open.
    assert_eq!(stats.opened, 14, "{}", stats.to_json());
    assert_eq!(stats.closed(PoolCloseReason::ServerClose), 13);
    assert_eq!(stats.closed(PoolCloseReason::MaxRequests), 0);
}
