//! Numbers, addresses and times written straight into a log line or a
//! header buffer: `fmt` cost about 500 to 2,000 instructions for each of
//! these, several times a request (callgrind, bench/README.md).

/// Appends `ip` in its usual text form. IPv4, nearly every client, is
/// written octet by octet: `Display` cost ~1,000 instructions, twice a
/// request (the access line and `X-Forwarded-For`).
pub fn write_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `t` as RFC 3339 in UTC with microseconds, as tracing's JSON
/// formatter does: `2026-11-27T01:02:03.456789Z`. The part up to the
/// seconds is kept per thread and only redone when the second changes.
pub fn rfc3339_utc(out: &mut Vec<u8>, t: std::time::SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        prefix = seconds_prefix(secs);
        SECOND.set((secs, prefix));
    }
    let mut micros = [0; 6];
    fill_digits(&mut micros, u64::from(d.subsec_micros()));
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&micros);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` since the Unix epoch.
fn seconds_prefix(secs: u64) -> [u8; 20] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Digit by digit: `write!` here cost 2,000 instructions a line.
    let fields: [(u64, usize, u8); 6] = [
        (year.clamp(0, 9999) as u64, 4, b'-'),
        (month as u64, 2, b'-'),
        (day as u64, 2, b'T'),
        (rem / 3600, 2, b':'),
        (rem / 60 % 60, 2, b':'),
        (rem % 60, 2, b'.'),
    ];
    let mut prefix = [0; 20];
    let mut at = 0;
    for (value, width, sep) in fields {
        fill_digits(&mut prefix[at..at + width], value);
        prefix[at + width] = sep;
        at += width + 1;
    }
    prefix
}

/// Fills `slots` with the last `slots.len()` decimal digits of `value`.
fn fill_digits(slots: &mut [u8], mut value: u64) {
    for slot in slots.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.20.3.4", "::1", "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4"] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string(), "{text}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut out = Vec::new();
        let t = std::time::UNIX_EPOCH + Duration::from_micros(1_795_741_323_456_789);
        rfc3339_utc(&mut out, t);
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-27T01:02:03.456789Z");
        let mut out = Vec::new();
        rfc3339_utc(&mut out, std::time::UNIX_EPOCH + Duration::from_secs(951_782_400)); // a leap day
        assert_eq!(String::from_utf8(out).unwrap(), "2000-02-29T00:00:00.000000Z");
        // The same second again, then the next: the kept prefix is redone.
        for (micros, text) in [(0, "2000-02-29T00:00:00.000000Z"), (999_999, "2000-02-29T00:00:00.999999Z"), (1_000_007, "2000-02-29T00:00:01.000007Z")] {
            let mut out = Vec::new();
            rfc3339_utc(&mut out, std::time::UNIX_EPOCH + Duration::from_secs(951_782_400) + Duration::from_micros(micros));
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }
}
