//! Redis Cluster hash slots: which node a key lives on, so that a script only ever touches the
//! keys of one slot (see `batch.rs` and `multi.rs`).

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of its hash tag, mod 16384).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC16-XMODEM("foo{}{bar}") mod 16384, computed apart from this code.
    const SLOT_OF_FOO_EMPTY_BAR: u16 = 8363;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from the Redis Cluster specification's reference implementation.
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
        // Redis's documented cases: an empty tag does not count (the whole key is hashed),
        // only the first {...} does, and a tag may start with a brace.
        assert_eq!(key_slot("foo{}{bar}"), SLOT_OF_FOO_EMPTY_BAR);
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("a:{x}:gcra"), key_slot("b:{x}:sliding_log"));
    }
}
