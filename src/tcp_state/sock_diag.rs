//! Counting TCP sockets through the kernel's netlink `sock_diag` interface (Linux): the
//! kernel filters by port before anything is copied out, so counting one port's sockets does
//! not cost a walk of a text table of every socket, as `/proc/net/tcp` does.
//!
//! One request per address family (`inet_diag_req_v2`, all states, a bytecode filter on the
//! ports the [`Filter`] names); the answers (`inet_diag_msg`) are matched against the whole
//! filter (addresses included) here. Plain safe code over a netlink socket made by socket2.

use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::{canonical_ip, Filter, SocketEntry, StateCounts, TcpState};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Bytecode operations (`linux/inet_diag.h`): the source (local) and destination (remote)
/// port equals the value in the operation that follows (Linux 4.16 and later).
const INET_DIAG_BC_S_EQ: u8 = 11;
const INET_DIAG_BC_D_EQ: u8 = 12;
const NLMSG_HEADER: usize = 16;
const SOCKID: usize = 48;

/// Counts the sockets matching `filter` by state, through `sock_diag`.
pub(crate) fn count(filter: &Filter) -> io::Result<StateCounts> {
    let mut counts = StateCounts::default();
    for_each_socket(filter, |entry| counts.add(entry.state))?;
    Ok(counts)
}

/// Calls `f` with every socket matching `filter`, IPv4 then IPv6.
pub(crate) fn for_each_socket(filter: &Filter, mut f: impl FnMut(&SocketEntry)) -> io::Result<()> {
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
    )?;
    for (seq, family) in [(1, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        socket.send(&request(seq, family, filter))?;
        read_answers(&socket, seq, |entry| {
            if filter.matches(&entry) {
                f(&entry);
            }
        })?;
    }
    Ok(())
}

/// A dump request for one family: every state, the ports the filter names checked in the
/// kernel.
fn request(seq: u32, family: u8, filter: &Filter) -> Vec<u8> {
    let mut bytecode = Vec::new();
    let conditions: Vec<(u8, u16)> = [
        filter
            .local_port_condition()
            .map(|p| (INET_DIAG_BC_S_EQ, p)),
        filter
            .remote_port_condition()
            .map(|p| (INET_DIAG_BC_D_EQ, p)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let total = conditions.len() * 8;
    for (i, (code, port)) in conditions.into_iter().enumerate() {
        // Met: on to the next condition (past the end of the last one means accept). Not met:
        // past the end by 4, which means reject.
        let left = total - i * 8;
        bytecode.push(code);
        bytecode.push(8);
        bytecode.extend_from_slice(&((left + 4) as u16).to_ne_bytes());
        bytecode.extend_from_slice(&[0, 0]);
        bytecode.extend_from_slice(&port.to_ne_bytes());
    }
    let attribute = if bytecode.is_empty() {
        0
    } else {
        4 + bytecode.len()
    };
    let len = NLMSG_HEADER + 8 + SOCKID + attribute;
    let mut message = Vec::with_capacity(len);
    message.extend_from_slice(&(len as u32).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    message.extend_from_slice(&seq.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, extensions, padding, states, then the socket id
    // (left empty: the bytecode does the filtering).
    message.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    message.extend_from_slice(&u32::MAX.to_ne_bytes());
    message.extend_from_slice(&[0u8; SOCKID]);
    if attribute > 0 {
        message.extend_from_slice(&(attribute as u16).to_ne_bytes());
        message.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        message.extend_from_slice(&bytecode);
    }
    message
}

/// Reads the answers to request `seq` until the kernel says it is done.
fn read_answers(socket: &Socket, seq: u32, mut f: impl FnMut(SocketEntry)) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = (&*socket).read(&mut buf)?;
        let mut rest = &buf[..n];
        while rest.len() >= NLMSG_HEADER {
            let len = u32::from_ne_bytes(field(rest, 0)) as usize;
            let kind = u16::from_ne_bytes(field(rest, 4));
            let message_seq = u32::from_ne_bytes(field(rest, 8));
            if len < NLMSG_HEADER || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "sock_diag: truncated netlink message",
                ));
            }
            let payload = &rest[NLMSG_HEADER..len];
            if message_seq == seq {
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes(field(b, 0)));
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                    }
                    _ => {
                        if let Some(entry) = parse_message(payload) {
                            f(entry);
                        }
                    }
                }
            }
            // Messages are aligned to 4 bytes.
            let advance = (len + 3) & !3;
            rest = rest.get(advance..).unwrap_or(&[]);
        }
    }
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// One `inet_diag_msg`: family, state, timer, retransmits, then the socket id (ports in
/// network order, addresses as 16 bytes each).
fn parse_message(payload: &[u8]) -> Option<SocketEntry> {
    if payload.len() < 4 + SOCKID {
        return None;
    }
    let family = i32::from(payload[0]);
    let state = TcpState::from_kernel(payload[1])?;
    let id = &payload[4..4 + SOCKID];
    let local_port = u16::from_be_bytes(field(id, 0));
    let remote_port = u16::from_be_bytes(field(id, 2));
    let address = |at: usize| -> Option<IpAddr> {
        match family {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(field::<4>(id, at)))),
            libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(field::<16>(id, at)))),
            _ => None,
        }
    };
    Some(SocketEntry {
        local: SocketAddr::new(canonical_ip(address(4)?), local_port),
        remote: SocketAddr::new(canonical_ip(address(20)?), remote_port),
        state,
        keepalive_timer: None,
    })
}
