//! Lowercase hex digits of integers, written into a fixed array: the
//! request path shows ids and fingerprints in hex, and `format!("{:x}")`
//! costs a trip through `core::fmt` (about 2% of the samples under perf, for
//! the request id and the access log's session fingerprint together).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The `N` lowest hex digits of `value`, most significant first
/// (zero-padded, as `{:0N$x}` writes them when `value` fits).
pub fn digits<const N: usize>(value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    let mut rest = value;
    for at in (0..N).rev() {
        out[at] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
    }
    out
}

/// The digits as text (always ASCII).
pub fn as_str(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_format_writes() {
        for n in [0u64, 1, 0xa5, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(as_str(&digits::<16>(n)), format!("{n:016x}"));
            assert_eq!(
                as_str(&digits::<8>(n & 0xffff_ffff)),
                format!("{:08x}", n & 0xffff_ffff)
            );
        }
    }
}
