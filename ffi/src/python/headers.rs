//! The informational rate-limit headers of one decision, rendered natively.
//!
//! Every allowed response of a decorated view carries these five fields; building their
//! strings here costs a fraction of doing it in Python. `flux/headers.py` documents the
//! fields and renders the rarer cases (several limits, denials with jitter); the Python tests
//! check that both renderings agree for every algorithm.

/// The header names, as written on the wire.
pub const NAMES: [&str; 5] = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
];

/// The same names lower-cased, as an ASGI raw header list holds them.
pub const RAW_NAMES: [&[u8]; 5] = [
    b"x-ratelimit-limit",
    b"x-ratelimit-remaining",
    b"x-ratelimit-reset",
    b"ratelimit-policy",
    b"ratelimit",
];

/// Whole seconds, rounded up, never negative; as Python's `flux.headers.ceil_seconds`, a
/// nanosecond of float noise above a whole second does not add a second.
pub fn ceil_seconds(seconds: f64) -> u64 {
    (seconds - 1e-9).ceil().max(0.0) as u64
}

/// Whether `text` is safe inside a header value: printable ASCII only (no CR/LF injection).
pub fn is_printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// The values of [`NAMES`], in order, for a decision of a limit named `quoted_name` (an
/// sf-string, quotes included) whose window is `window_s` whole seconds.
pub fn values(
    limit: u64,
    remaining: u64,
    reset_after: f64,
    quoted_name: &str,
    window_s: u64,
) -> [String; 5] {
    let reset = ceil_seconds(reset_after);
    [
        limit.to_string(),
        remaining.to_string(),
        reset.to_string(),
        format!("{quoted_name};q={limit};w={window_s}"),
        format!("{quoted_name};r={remaining};t={reset}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_but_forgives_float_noise() {
        assert_eq!(ceil_seconds(0.0), 0);
        assert_eq!(ceil_seconds(-3.0), 0);
        assert_eq!(ceil_seconds(0.2), 1);
        assert_eq!(ceil_seconds(2.0 + 1e-12), 2);
        assert_eq!(ceil_seconds(2.01), 3);
    }

    #[test]
    fn renders_the_five_fields() {
        let v = values(10, 7, 3.2, "\"api\"", 60);
        assert_eq!(v, ["10", "7", "4", "\"api\";q=10;w=60", "\"api\";r=7;t=4"]);
    }

    #[test]
    fn only_printable_ascii_is_safe() {
        assert!(is_printable_ascii("\"api\""));
        assert!(!is_printable_ascii("\"a\r\nb\""));
        assert!(!is_printable_ascii("\"é\""));
    }
}
