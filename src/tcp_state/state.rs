//! TCP states as the kernel names and numbers them, and counts of sockets by state.

use std::fmt;

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcpState {
    /// `TCP_ESTABLISHED` (1): the connection is open in both directions.
    Established,
    /// `TCP_SYN_SENT` (2): the client sent a SYN and waits for the SYN-ACK.
    SynSent,
    /// `TCP_SYN_RECV` (3): the server answered a SYN and waits for the final ACK.
    SynRecv,
    /// `TCP_FIN_WAIT1` (4): this end closed and waits for its FIN to be acknowledged.
    FinWait1,
    /// `TCP_FIN_WAIT2` (5): this end's FIN was acknowledged; it waits for the peer's FIN.
    FinWait2,
    /// `TCP_TIME_WAIT` (6): both ends closed and this end closed first; the 4-tuple is held.
    TimeWait,
    /// `TCP_CLOSE` (7): closed (or bound but neither listening nor connected).
    Close,
    /// `TCP_CLOSE_WAIT` (8): the peer closed; this end has not closed yet.
    CloseWait,
    /// `TCP_LAST_ACK` (9): the peer closed first, then this end; waits for the last ACK.
    LastAck,
    /// `TCP_LISTEN` (10): a listening socket.
    Listen,
    /// `TCP_CLOSING` (11): both ends closed at the same time.
    Closing,
    /// `TCP_NEW_SYN_RECV` (12): a request socket for a connection being established.
    NewSynRecv,
}

/// Every state, in kernel order (index = code - 1).
const ALL_STATES: [TcpState; 12] = [
    TcpState::Established,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Listen,
    TcpState::Closing,
    TcpState::NewSynRecv,
];

impl TcpState {
    /// The state for a kernel state code (the `st` column of `/proc/net/tcp`), or `None` for
    /// a code this version does not know.
    pub fn from_kernel(code: u8) -> Option<TcpState> {
        let index = usize::from(code).checked_sub(1)?;
        ALL_STATES.get(index).copied()
    }

    /// The kernel's state code (the `st` column of `/proc/net/tcp`).
    pub(super) fn code(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
            TcpState::NewSynRecv => 12,
        }
    }

    /// Index into [`StateCounts`]' array.
    fn index(self) -> usize {
        usize::from(self.code() - 1)
    }

    /// The state's name as `netstat` prints it (the kernel's name without `TCP_`), e.g.
    /// `"ESTABLISHED"`, `"TIME_WAIT"`, `"CLOSE_WAIT"`, `"FIN_WAIT2"`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts of sockets by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    counts: [usize; ALL_STATES.len()],
}

impl StateCounts {
    /// The number of sockets in `state`.
    pub fn get(&self, state: TcpState) -> usize {
        self.counts[state.index()]
    }

    /// The number of sockets in `TIME_WAIT`.
    pub fn time_wait(&self) -> usize {
        self.get(TcpState::TimeWait)
    }

    /// The number of sockets in `CLOSE_WAIT`.
    pub fn close_wait(&self) -> usize {
        self.get(TcpState::CloseWait)
    }

    /// The number of sockets in `ESTABLISHED`.
    pub fn established(&self) -> usize {
        self.get(TcpState::Established)
    }

    /// The number of sockets in any state.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// The states with at least one socket and their counts, in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, usize)> + '_ {
        ALL_STATES
            .iter()
            .zip(self.counts.iter())
            .filter(|&(_, &n)| n != 0)
            .map(|(&state, &n)| (state, n))
    }

    pub(crate) fn add(&mut self, state: TcpState) {
        self.counts[state.index()] += 1;
    }
}

impl fmt::Display for StateCounts {
    /// Non-zero states in kernel order, e.g. `ESTABLISHED=3 TIME_WAIT=1`; `none` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (state, n) in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{state}={n}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_round_trip() {
        assert_eq!(TcpState::from_kernel(0), None);
        for code in 1..=12u8 {
            let state = TcpState::from_kernel(code).unwrap();
            assert_eq!(state.code(), code);
            assert_eq!(ALL_STATES[state.index()], state);
        }
        for code in 13..=u8::MAX {
            assert_eq!(TcpState::from_kernel(code), None);
        }
        assert_eq!(TcpState::from_kernel(0x01), Some(TcpState::Established));
        assert_eq!(TcpState::from_kernel(0x06), Some(TcpState::TimeWait));
        assert_eq!(TcpState::from_kernel(0x08), Some(TcpState::CloseWait));
        assert_eq!(TcpState::from_kernel(0x0A), Some(TcpState::Listen));
        assert_eq!(TcpState::from_kernel(0x0C), Some(TcpState::NewSynRecv));
    }

    #[test]
    fn state_names() {
        let names: Vec<String> = ALL_STATES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING",
                "NEW_SYN_RECV",
            ]
        );
        for state in ALL_STATES {
            assert_eq!(state.to_string(), state.name());
        }
    }

    #[test]
    fn counts_and_display() {
        let mut counts = StateCounts::default();
        assert_eq!(counts.to_string(), "none");
        assert_eq!(counts.total(), 0);
        assert_eq!(counts.iter().count(), 0);

        for state in [
            TcpState::TimeWait,
            TcpState::Established,
            TcpState::Established,
            TcpState::Established,
            TcpState::CloseWait,
            TcpState::NewSynRecv,
        ] {
            counts.add(state);
        }
        assert_eq!(counts.established(), 3);
        assert_eq!(counts.time_wait(), 1);
        assert_eq!(counts.close_wait(), 1);
        assert_eq!(counts.get(TcpState::Listen), 0);
        assert_eq!(counts.get(TcpState::NewSynRecv), 1);
        assert_eq!(counts.total(), 6);
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            [
                (TcpState::Established, 3),
                (TcpState::TimeWait, 1),
                (TcpState::CloseWait, 1),
                (TcpState::NewSynRecv, 1),
            ]
        );
        assert_eq!(
            counts.to_string(),
            "ESTABLISHED=3 TIME_WAIT=1 CLOSE_WAIT=1 NEW_SYN_RECV=1"
        );
    }
}
