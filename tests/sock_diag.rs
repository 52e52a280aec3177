//! The netlink `sock_diag` reader agrees with the /proc/net/tcp reader on real sockets in
//! several states (LISTEN, ESTABLISHED, CLOSE_WAIT, FIN_WAIT2, TIME_WAIT), with the ports
//! filtered in the kernel.
#![cfg(target_os = "linux")]

mod support;

use keepalive::tcp_state::{self, Filter, TcpState};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn sock_diag_and_proc_count_the_same_sockets() {
    let listener = TcpListener::bind((unique_loopback(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Three connections: one left open, one the client closes (server in CLOSE_WAIT, client
    // in FIN_WAIT2), one the server closes after the client's FIN (server TIME_WAIT on
    // neither side: the client closed first, so the client holds TIME_WAIT).
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        clients.push(client);
        servers.push(server);
    }
    drop(clients.remove(1)); // server 1 goes to CLOSE_WAIT
    drop(clients.remove(1)); // the third client closes too ...
    let mut third = servers.remove(2);
    let mut buf = [0u8; 1];
    assert_eq!(third.read(&mut buf).await.unwrap(), 0);
    drop(third); // ... and its server closes after: the client side ends in TIME_WAIT.

    let server_side = Filter::new().local_ip(addr.ip()).local_port(addr.port());
    let client_side = Filter::new().remote_ip(addr.ip()).remote_port(addr.port());
    wait_until("the states settle", SOON, || {
        let server = tcp_state::count_proc(server_side).unwrap();
        let client = tcp_state::count_proc(client_side).unwrap();
        server.get(TcpState::Listen) == 1
            && server.established() == 1
            && server.close_wait() == 1
            && client.established() == 1
            && client.get(TcpState::FinWait2) == 1
            && client.time_wait() == 1
    })
    .await;
    for filter in [server_side, client_side] {
        let proc = tcp_state::count_proc(filter).unwrap();
        let diag = tcp_state::count_sock_diag(filter).unwrap();
        assert_eq!(diag, proc, "sock_diag {diag} vs /proc {proc}");
        assert_eq!(tcp_state::count(filter).unwrap(), proc);
    }
    // A port nobody uses: nothing, from both.
    let nobody = Filter::new().local_ip(addr.ip()).local_port(1);
    assert_eq!(tcp_state::count_sock_diag(nobody).unwrap().total(), 0);
    drop(servers);
}
