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

/// Writes the values of [`NAMES`], in order, one after another into `out`, for a decision of
/// a limit named `quoted_name` (an sf-string, quotes included) whose window is `window_s`
/// whole seconds. Returns the byte range of each value in `out`.
///
/// One buffer and no formatting machinery: this runs on every allowed request.
pub fn write_values(
    out: &mut String,
    limit: u64,
    remaining: u64,
    reset_after: f64,
    quoted_name: &str,
    window_s: u64,
) -> [std::ops::Range<usize>; 5] {
    fn mark(out: &mut String, parts: &[&str]) -> std::ops::Range<usize> {
        let start = out.len();
        for part in parts {
            out.push_str(part);
        }
        start..out.len()
    }
    // One stack buffer per number: each formatted text is used twice.
    let (mut a, mut b, mut c, mut d) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    let limit_text = a.format(limit);
    let remaining_text = b.format(remaining);
    let reset_text = c.format(ceil_seconds(reset_after));
    let window_text = d.format(window_s);
    [
        mark(out, &[limit_text]),
        mark(out, &[remaining_text]),
        mark(out, &[reset_text]),
        mark(out, &[quoted_name, ";q=", limit_text, ";w=", window_text]),
        mark(
            out,
            &[quoted_name, ";r=", remaining_text, ";t=", reset_text],
        ),
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
        let mut out = String::new();
        let ranges = write_values(&mut out, 10, 7, 3.2, "\"api\"", 60);
        let values = ranges.map(|range| out[range].to_string());
        assert_eq!(
            values,
            ["10", "7", "4", "\"api\";q=10;w=60", "\"api\";r=7;t=4"]
        );
    }

    #[test]
    fn only_printable_ascii_is_safe() {
        assert!(is_printable_ascii("\"api\""));
        assert!(!is_printable_ascii("\"a\r\nb\""));
        assert!(!is_printable_ascii("\"é\""));
    }
}
