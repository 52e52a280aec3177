//! The `/proc/net/tcp` and `/proc/net/tcp6` tables: reading them (Linux only) and parsing
//! their text (a pure parser that works everywhere).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{canonical_ip, Filter, SocketEntry, StateCounts, TcpState};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp_state::tests::{addr, entry};

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
}
