//! PII scrubbing of the request text before it is embedded. The request text never leaves
//! the device, but its embedding does (noised), and embeddings can be inverted into text:
//! what is scrubbed here cannot be recovered from the embedding at all.
//!
//! Scrubbed: secrets and API keys, URLs, e-mail addresses, IBANs, payment card numbers,
//! national-id-like numbers, phone numbers, IP addresses and UUIDs. Not scrubbed: personal
//! names and street addresses, which need a language model to find reliably.

use regex::{Captures, Regex};
use std::sync::OnceLock;

struct Patterns {
    secret_assignment: Regex,
    known_secret: Regex,
    long_token: Regex,
    url: Regex,
    email: Regex,
    iban: Regex,
    card: Regex,
    national_id: Regex,
    phone: Regex,
    ipv4: Regex,
    ipv6: Regex,
    uuid: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("PII pattern compiles");
        Patterns {
            secret_assignment: re(
                r#"(?i)\b((?:api[_-]?key|secret|token|passw(?:or)?d|pwd|auth(?:orization)?|bearer)["']?\s*[:=]\s*["']?)[^\s"',;]{4,}"#,
            ),
            known_secret: re(concat!(
                r"\b(?:sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|",
                r"xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,}|",
                r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
            )),
            long_token: re(r"\b[A-Za-z0-9_\-+/=]{32,}\b"),
            url: re(r#"(?i)\b(?:https?://|ftp://|www\.)[^\s<>"'`)\]}]+"#),
            email: re(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
            iban: re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
            card: re(r"\b\d(?:[ -]?\d){12,18}\b"),
            national_id: re(r"\b\d{3}-\d{2}-\d{4}\b"),
            phone: re(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}\b"),
            ipv4: re(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
            // Candidates only: a run of hex digits and colons, checked by the address parser.
            ipv6: re(r"(?i)[0-9a-f:]*:[0-9a-f:]*:[0-9a-f:.]*"),
            uuid: re(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        }
    })
}

/// The placeholders [`scrub`] puts where it removed something.
pub const PLACEHOLDERS: [&str; 8] = [
    "[secret]", "[url]", "[email]", "[id]", "[iban]", "[card]", "[ip]", "[phone]",
];

/// Replaces every piece of PII found in `text` with a bracketed placeholder such as `[email]`.
pub fn scrub(text: &str) -> String {
    let p = patterns();
    let t = p.secret_assignment.replace_all(text, "${1}[secret]");
    let t = p.known_secret.replace_all(&t, "[secret]");
    let t = p.url.replace_all(&t, "[url]");
    let t = p.email.replace_all(&t, "[email]");
    let t = p.uuid.replace_all(&t, "[id]");
    let t = p.long_token.replace_all(&t, |c: &Captures| {
        let s = &c[0];
        let has_digit = s.bytes().any(|b| b.is_ascii_digit());
        let has_alpha = s.bytes().any(|b| b.is_ascii_alphabetic());
        if has_digit && has_alpha {
            "[secret]".to_owned()
        } else {
            s.to_owned()
        }
    });
    let t = p.iban.replace_all(&t, |c: &Captures| {
        if iban_checksum_ok(&c[0]) {
            "[iban]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let t = p.card.replace_all(&t, |c: &Captures| {
        if luhn_ok(&c[0]) {
            "[card]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let t = p.national_id.replace_all(&t, "[id]");
    let t = p.ipv4.replace_all(&t, "[ip]");
    let t = p.ipv6.replace_all(&t, |c: &Captures| {
        let s = &c[0];
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            "[ip]".to_owned()
        } else {
            s.to_owned()
        }
    });
    let t = p.phone.replace_all(&t, |c: &Captures| {
        let digits = c[0].bytes().filter(u8::is_ascii_digit).count();
        if (9..=15).contains(&digits) {
            "[phone]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    t.into_owned()
}

fn luhn_ok(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn iban_checksum_ok(iban: &str) -> bool {
    let compact: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u64 = 0;
    for c in rearranged {
        let value = match c.to_digit(36) {
            Some(v) => v as u64,
            None => return false,
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn scrubs_each_kind_of_pii() {
        let cases = [
            (
                "mail me at jane.doe+x@example.co.uk please",
                "mail me at [email] please",
            ),
            ("see https://example.com/a?b=c) now", "see [url]) now"),
            ("card 4111 1111 1111 1111 ok", "card [card] ok"),
            ("iban DE89 3704 0044 0532 0130 00 ok", "iban [iban] ok"),
            ("call +1 (415) 555-0132 today", "call [phone] today"),
            ("server 192.168.10.254 down", "server [ip] down"),
            ("v6 2001:db8::8a2e:370:7334 here", "v6 [ip] here"),
            ("key sk-abcdefghijklmnopqrstuvwx123 used", "key [secret] used"),
            ("api_key = 'Zx81k2LmNq' set", "api_key = '[secret]' set"),
            ("ssn 123-45-6789 x", "ssn [id] x"),
            ("id 6e5b9682-e4c9-4a5d-a528-2c3c0c58eca7 x", "id [id] x"),
            ("token ghp_0123456789abcdefghijABCDEFGHIJ012345 x", "token [secret] x"),
        ];
        for (input, expected) in cases {
            assert_eq!(scrub(input), expected, "input: {input}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in [
            "Write a python function that sums 100 numbers",
            "Meet me on 2023-01-08 at 20:51:59",
            "The year 1995 to 2015, 17.6% growth",
            "card-like but fails luhn 4111 1111 1111 1112",
        ] {
            assert_eq!(scrub(text), text);
        }
    }
}
