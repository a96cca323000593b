//! IP literals and CIDR blocks, parsed the way event-ruler's `CIDR` class does: a string is
//! only an IP if it passes its two shape regexes, and IPv4-mapped IPv6 addresses become IPv4
//! (Java's `InetAddress` does that).

use std::net::Ipv6Addr;

/// Why a string is not an IP address, in event-ruler's two flavours.
pub(crate) enum IpError {
    /// Fails the shape check (`Nonstandard IP address: …`).
    Nonstandard,
    /// Looks like an IP but does not parse (`Invalid IP address: …`).
    Invalid,
}

/// `[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+`
fn looks_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[0-9a-fA-F:]*:[0-9a-fA-F:]*`
fn looks_ipv6(s: &str) -> bool {
    s.contains(':') && s.bytes().all(|b| b == b':' || b.is_ascii_hexdigit())
}

/// The address bytes (4 or 16) of an IP literal.
pub(crate) fn ip_bytes(s: &str) -> Result<Vec<u8>, IpError> {
    if looks_ipv4(s) {
        // Java reads each part as decimal, leading zeros included.
        let mut out = Vec::with_capacity(4);
        for part in s.split('.') {
            match part.parse::<u32>() {
                Ok(v) if v <= 255 => out.push(v as u8),
                _ => return Err(IpError::Invalid),
            }
        }
        return Ok(out);
    }
    if looks_ipv6(s) {
        let addr: Ipv6Addr = s.parse().map_err(|_| IpError::Invalid)?;
        return Ok(match addr.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => addr.octets().to_vec(),
        });
    }
    Err(IpError::Nonstandard)
}

/// An inclusive byte range of addresses of one family.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IpRange {
    pub(crate) bottom: Vec<u8>,
    pub(crate) top: Vec<u8>,
}

impl IpRange {
    pub(crate) fn contains(&self, addr: &[u8]) -> bool {
        addr.len() == self.bottom.len() && addr >= self.bottom.as_slice() && addr <= self.top.as_slice()
    }
}

/// Parses `ip/bits` with event-ruler's messages. Like event-ruler, the bottom of the range is
/// the address as written (host bits are not cleared) and /32 and /128 are refused.
pub(crate) fn cidr(text: &str) -> Result<IpRange, String> {
    // Java's String.split drops trailing empty strings.
    let mut parts: Vec<&str> = text.split('/').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() != 2 {
        return Err("Malformed CIDR, one '/' required".into());
    }
    let bits = parse_java_int(parts[1]).ok_or("Malformed CIDR, mask bits must be an integer")?;
    if bits < 0 {
        return Err("Malformed CIDR, mask bits must not be negative".into());
    }
    let ip = match ip_bytes(parts[0]) {
        Ok(ip) => ip,
        Err(IpError::Nonstandard) => return Err(format!("Nonstandard IP address: {}", parts[0])),
        Err(IpError::Invalid) => return Err(format!("Invalid IP address: {}", parts[0])),
    };
    if ip.len() == 4 && bits > 31 {
        return Err("IPv4 mask bits must be < 32".into());
    }
    if ip.len() == 16 && bits > 127 {
        return Err("IPv6 mask bits must be < 128".into());
    }
    let mut host_bits = (ip.len() as i64) * 8 - bits;
    let mut top = ip.clone();
    for byte in top.iter_mut().rev() {
        if host_bits >= 8 {
            *byte = 0xff;
        } else if host_bits > 0 {
            *byte |= (1u8 << host_bits) - 1;
        }
        host_bits -= 8;
    }
    Ok(IpRange { bottom: ip, top })
}

/// `Integer.parseInt`: optional sign, decimal digits, 32-bit range.
fn parse_java_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = s.parse().ok()?;
    (i32::MIN as i64..=i32::MAX as i64).contains(&v).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges() {
        let r = cidr("10.0.0.0/24").unwrap();
        assert!(r.contains(&[10, 0, 0, 255]));
        assert!(!r.contains(&[10, 0, 1, 0]));
        let r6 = cidr("2001:db8:1234:1a00::/64").unwrap();
        assert!(r6.contains(&ip_bytes("2001:0db8:1234:1a00:0000:0000:0000:0000").ok().unwrap()));
        assert!(!r6.contains(&[10, 0, 0, 1]));
    }

    #[test]
    fn cidr_messages() {
        assert_eq!(cidr("bad-filter").unwrap_err(), "Malformed CIDR, one '/' required");
        assert_eq!(cidr("bad-/64filter").unwrap_err(), "Malformed CIDR, mask bits must be an integer");
        assert_eq!(cidr("xx.11.xx/8").unwrap_err(), "Nonstandard IP address: xx.11.xx");
        assert_eq!(cidr("256.0.0.0/8").unwrap_err(), "Invalid IP address: 256.0.0.0");
        assert_eq!(cidr("10.0.0.0/32").unwrap_err(), "IPv4 mask bits must be < 32");
        assert_eq!(cidr("10.0.0.0/-1").unwrap_err(), "Malformed CIDR, mask bits must not be negative");
        assert_eq!(cidr("10.0.0.0/").unwrap_err(), "Malformed CIDR, one '/' required");
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        assert_eq!(ip_bytes("::ffff:a00:1").ok(), Some(vec![10, 0, 0, 1]));
        assert!(matches!(ip_bytes("::ffff:10.0.0.1"), Err(IpError::Nonstandard)));
    }
}
