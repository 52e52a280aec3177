//! What the client's pool is keyed by: [`PoolKey`], the scheme, host and port of a request
//! URI.

use http::uri::Uri;

/// What connections are pooled by: scheme, host (case-insensitive) and port. Cheap to make and
/// clone: it shares the request URI's authority bytes.
#[derive(Debug, Clone)]
pub struct PoolKey {
    https: bool,
    authority: http::uri::Authority,
    port: u16,
    /// Where the host is in the authority, found once (`Authority::host` scans the string on
    /// every call, and keys are compared on every checkout and return).
    host: std::ops::Range<usize>,
    /// FNV-1a of the lowercase host, computed once: hashing and comparing keys on every
    /// checkout then costs no scan of the string.
    host_hash: u64,
}

impl PoolKey {
    /// The key of a request URI; `None` without an http(s) scheme or a host.
    pub fn of(uri: &Uri) -> Option<PoolKey> {
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            _ => return None,
        };
        let authority = uri.authority()?.clone();
        // One pass over the authority (`[userinfo@]host[:port]`, already validated by `http`)
        // from its end, for both the host and the port: the first ':' met is the port's
        // (unless a ']' comes first: an IPv6 literal without a port), an '@' ends the host.
        let whole = authority.as_str();
        let bytes = whole.as_bytes();
        let mut start = 0;
        let mut colon = None;
        let mut bracket = false;
        for (i, &byte) in bytes.iter().enumerate().rev() {
            match byte {
                b'@' => {
                    start = i + 1;
                    break;
                }
                b':' if colon.is_none() && !bracket => colon = Some(i),
                b']' if colon.is_none() => bracket = true,
                _ => {}
            }
        }
        let (host_str, port_str) = match colon {
            Some(at) => (&whole[start..at], Some(&bytes[at + 1..])),
            None => (&whole[start..], None),
        };
        let port = port_str
            .and_then(crate::header::parse_decimal)
            .and_then(|port| u16::try_from(port).ok())
            .unwrap_or(if https { 443 } else { 80 });
        let host = start..start + host_str.len();
        let host_hash = host_str
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
                (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
            });
        Some(PoolKey {
            https,
            authority,
            port,
            host,
            host_hash,
        })
    }

    /// Whether `uri` has this key: the same scheme and the very same authority (cheaper than
    /// making its key; an authority written differently makes a key of its own to compare).
    pub(super) fn is_key_of(&self, uri: &Uri) -> bool {
        uri.authority().is_some_and(|authority| {
            let (theirs, ours) = (authority.as_str(), self.authority.as_str());
            // (A URI cloned from the one the key was made of shares its bytes.)
            std::ptr::eq(theirs, ours) || theirs == ours
        }) && match uri.scheme_str() {
            Some("http") => !self.https,
            Some("https") => self.https,
            _ => false,
        }
    }

    fn host(&self) -> &[u8] {
        self.authority
            .as_str()
            .as_bytes()
            .get(self.host.clone())
            .unwrap_or_default()
    }
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.https == other.https
            && self.port == other.port
            && self.host_hash == other.host_hash
            // (Keys made from clones of one URI share its bytes.)
            && ((self.host == other.host
                && std::ptr::eq(self.authority.as_str(), other.authority.as_str()))
                || self.host() == other.host()
                || self.host().eq_ignore_ascii_case(other.host()))
    }
}

impl Eq for PoolKey {}

impl std::hash::Hash for PoolKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.host_hash ^ (u64::from(self.port) << 1) ^ u64::from(self.https));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(uri: &str) -> Option<PoolKey> {
        PoolKey::of(&uri.parse().unwrap())
    }

    #[test]
    fn pool_key_is_scheme_host_and_port() {
        let keys: HashSet<PoolKey> = [
            "http://Example.com/a",
            "http://example.COM:80/b",
            "HTTP://example.com/?q",
        ]
        .iter()
        .filter_map(|u| key(u))
        .collect();
        assert_eq!(keys.len(), 1, "case and the default port do not matter");
        assert_ne!(key("http://example.com/"), key("https://example.com/"));
        assert_ne!(key("http://example.com/"), key("http://example.com:8080/"));
        assert_eq!(key("https://example.com/"), key("https://example.com:443/"));
        assert_eq!(
            key("http://user@example.com:80/"),
            key("http://example.com/")
        );
        assert_eq!(key("http://[::1]/"), key("http://[::1]:80/"));
        assert_ne!(key("http://[::1]:8080/"), key("http://[::1]/"));
        let v6 = key("http://u:p@[::1]:8080/").unwrap();
        assert_eq!((v6.host(), v6.port), (&b"[::1]"[..], 8080));
        assert!(key("/relative").is_none());
        assert!(key("ftp://example.com/").is_none());
    }
}
