//! A tiny deterministic PRNG (splitmix64) so `Random` placement replays from its seed.

/// One splitmix64 step: a well-mixed 64-bit value from any input.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, so an instance's random rank depends on its id, not its slice position.
pub(crate) fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The random rank of `instance_id` for the `step`-th task placed with `seed`.
pub(crate) fn rank(seed: u64, step: u64, instance_id: &str) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(step)) ^ fnv1a(instance_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_spread() {
        assert_eq!(rank(7, 0, "a"), rank(7, 0, "a"));
        assert_ne!(rank(7, 0, "a"), rank(8, 0, "a"));
        assert_ne!(rank(7, 0, "a"), rank(7, 1, "a"));
        assert_ne!(splitmix64(0), 0);
    }
}
