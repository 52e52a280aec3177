//! Property tests of the `Keep-Alive` header grammar in `keepalive::header`, the one place a
//! peer's bytes become deadlines and request budgets on the client.
//!
//! What they prove, over generated input (a bounded number of cases, so the file runs in a
//! second or two):
//!
//! - any bytes at all: parsing never panics and never yields a `timeout` over one day;
//! - what the server formats parses back to the same parameters;
//! - a header assembled from well-formed, malformed (negative, signed, fractional, hex,
//!   overflowing, over the one-day cap, empty, split by spaces, non-ASCII) and unrelated
//!   parameters, with random case, whitespace and quotes, yields exactly the first well-formed
//!   value of each parameter and nothing else (the stated rule for repeated parameters);
//! - several `Keep-Alive` header lines read the same as one line joined by commas.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use keepalive::header::{KeepAliveParams, KEEP_ALIVE};
use proptest::prelude::*;

/// The cap on `timeout=` the parser documents (one day).
const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        // No files: a failing case is printed, not persisted.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One parameter of a generated header, with what it should contribute.
#[derive(Debug, Clone)]
enum Item {
    /// `timeout=N`, well formed and within the cap.
    Timeout(u64),
    /// `max=N`, well formed and within `u32`.
    Max(u32),
    /// `timeout=<garbage>`: must be skipped.
    BadTimeout(String),
    /// `max=<garbage>`: must be skipped.
    BadMax(String),
    /// Another parameter, or words without `=`: must be ignored.
    Other(String),
}

/// A value no parser should read as a number of seconds or requests.
fn garbage_number() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..u64::MAX).prop_map(|n| format!("-{n}")),
        (0u64..1000).prop_map(|n| format!("+{n}")),
        (0u64..1000, 0u64..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        (1u64..9).prop_map(|n| format!("{n}e3")),
        (0u64..1000).prop_map(|n| format!("0x{n:x}")),
        (0u64..1000, 0u64..1000).prop_map(|(a, b)| format!("{a} {b}")),
        // Twenty digits and more: overflows a u64.
        "[1-9][0-9]{19,40}",
        Just(String::new()),
        Just("\"\"".to_string()),
        Just("abc".to_string()),
        Just("５".to_string()),  // a full-width digit
        Just("\"7".to_string()), // an unbalanced quote
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (0..=MAX_TIMEOUT_SECS).prop_map(Item::Timeout),
        any::<u32>().prop_map(Item::Max),
        prop_oneof![
            garbage_number(),
            // Above the one-day cap, still a valid u64.
            (MAX_TIMEOUT_SECS + 1..u64::MAX / 10).prop_map(|n| n.to_string()),
        ]
        .prop_map(Item::BadTimeout),
        prop_oneof![
            garbage_number(),
            // Above u32::MAX.
            (u64::from(u32::MAX) + 1..u64::MAX / 10).prop_map(|n| n.to_string()),
        ]
        .prop_map(Item::BadMax),
        prop_oneof![
            "[a-z]{0,8}".prop_map(|w| format!("timeouts{w}=5")),
            "[a-z]{0,8}".prop_map(|w| format!("x{w}=1")),
            Just("max =".to_string()),
            Just("timeout".to_string()),
            Just("max".to_string()),
            Just("=7".to_string()),
            Just(String::new()),
            "[a-z ;]{0,12}",
        ]
        .prop_map(Item::Other),
    ]
}

/// Renders a parameter name in random case.
fn cased(name: &str, upper: &[bool]) -> String {
    name.chars()
        .zip(upper.iter().cycle())
        .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// Renders one item with optional whitespace around the name and value, and optional quotes.
fn render(item: &Item, style: (bool, bool, bool), upper: &[bool]) -> String {
    let (space, quote, tab) = style;
    let pad = if tab {
        "\t"
    } else if space {
        " "
    } else {
        ""
    };
    let value = |v: String| if quote { format!("\"{v}\"") } else { v };
    match item {
        Item::Timeout(n) => format!(
            "{pad}{}{pad}={pad}{}",
            cased("timeout", upper),
            value(n.to_string())
        ),
        Item::Max(n) => format!(
            "{pad}{}{pad}={pad}{}",
            cased("max", upper),
            value(n.to_string())
        ),
        Item::BadTimeout(v) => format!("{pad}{}={}", cased("timeout", upper), value(v.clone())),
        Item::BadMax(v) => format!("{pad}{}={}", cased("max", upper), value(v.clone())),
        Item::Other(text) => text.clone(),
    }
}

/// The rule: the first well-formed value of each parameter wins, malformed ones are skipped.
fn expected(items: &[Item]) -> KeepAliveParams {
    KeepAliveParams {
        timeout: items.iter().find_map(|i| match i {
            Item::Timeout(n) => Some(Duration::from_secs(*n)),
            _ => None,
        }),
        max: items.iter().find_map(|i| match i {
            Item::Max(n) => Some(*n),
            _ => None,
        }),
    }
}

fn header_text() -> impl Strategy<Value = (Vec<Item>, String)> {
    prop::collection::vec(
        (
            item(),
            (any::<bool>(), any::<bool>(), any::<bool>()),
            prop::collection::vec(any::<bool>(), 1..8),
        ),
        0..8,
    )
    .prop_map(|parts| {
        let items: Vec<Item> = parts.iter().map(|(i, _, _)| i.clone()).collect();
        let text = parts
            .iter()
            .map(|(i, style, upper)| render(i, *style, upper))
            .collect::<Vec<_>>()
            .join(",");
        (items, text)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_parse_without_panic_and_within_the_cap(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let params = KeepAliveParams::parse(&bytes);
        if let Some(timeout) = params.timeout {
            prop_assert!(timeout.as_secs() <= MAX_TIMEOUT_SECS);
        }
    }

    #[test]
    fn grammar_shaped_bytes_parse_without_panic(text in "[timeoutmax=, \"0-9+\\-\t;]{0,64}") {
        let params = KeepAliveParams::parse(text.as_bytes());
        if let Some(timeout) = params.timeout {
            prop_assert!(timeout.as_secs() <= MAX_TIMEOUT_SECS);
        }
    }

    #[test]
    fn what_is_formatted_parses_back(timeout in prop::option::of(0..=MAX_TIMEOUT_SECS), max in prop::option::of(any::<u32>())) {
        let params = KeepAliveParams { timeout: timeout.map(Duration::from_secs), max };
        match params.to_header_value() {
            Some(value) => prop_assert_eq!(KeepAliveParams::parse(value.as_bytes()), params),
            None => prop_assert_eq!(params, KeepAliveParams::default()),
        }
    }

    #[test]
    fn first_well_formed_value_wins_and_garbage_is_skipped((items, text) in header_text()) {
        let parsed = KeepAliveParams::parse(text.as_bytes());
        prop_assert_eq!(parsed, expected(&items), "header: {:?}", text);
    }

    #[test]
    fn several_header_lines_read_as_one_joined_by_commas(lines in prop::collection::vec(header_text(), 1..4)) {
        let mut headers = HeaderMap::new();
        let mut all_items = Vec::new();
        let mut joined = Vec::new();
        for (items, text) in &lines {
            // Only values a peer can actually send (visible ASCII, spaces and tabs).
            let Ok(value) = HeaderValue::from_str(text) else { continue };
            headers.append(KEEP_ALIVE, value);
            all_items.extend(items.iter().cloned());
            joined.push(text.clone());
        }
        let from_headers = KeepAliveParams::from_headers(&headers);
        prop_assert_eq!(from_headers, KeepAliveParams::parse(joined.join(",").as_bytes()));
        prop_assert_eq!(from_headers, expected(&all_items));
    }
}
