//! CRC16-XMODEM, the hash of Redis Cluster's key → slot map, eight bytes per step.
//!
//! The `crc16` crate computes it a byte at a time; this is the same CRC "sliced by 8": table
//! `k` holds the CRC of each byte value followed by `k` zero bytes, so eight message bytes
//! take eight independent look-ups instead of eight dependent steps. The tables are built
//! once, from the `crc16` crate itself, and the result is checked against it in the tests.
//! Every routed request hashes its key here, so it is on the hot path.

use std::sync::LazyLock;

/// Bytes consumed per step.
const STEP: usize = 8;

/// `TABLES[k][b]`: CRC16-XMODEM of byte `b` followed by `k` zero bytes.
static TABLES: LazyLock<Box<[[u16; 256]; STEP]>> = LazyLock::new(|| {
    let mut tables = Box::new([[0u16; 256]; STEP]);
    let mut message = [0u8; STEP];
    for (zeros, table) in tables.iter_mut().enumerate() {
        for (byte, entry) in (0u8..=255).zip(table.iter_mut()) {
            message[0] = byte;
            *entry = crc16::State::<crc16::XMODEM>::calculate(&message[..=zeros]);
        }
    }
    tables
});

/// CRC16-XMODEM of `data` (polynomial 0x1021, initial value 0, no reflection).
#[inline]
pub fn xmodem(data: &[u8]) -> u16 {
    let [t0, t1, t2, t3, t4, t5, t6, t7] = &**TABLES;
    let mut crc: u16 = 0;
    let mut chunks = data.chunks_exact(STEP);
    for chunk in &mut chunks {
        // Always eight bytes; the check is compiled away.
        let Ok(&[b0, b1, b2, b3, b4, b5, b6, b7]) = <&[u8; STEP]>::try_from(chunk) else {
            continue;
        };
        // The 16-bit register folds into the first two bytes; the CRC is linear in the rest.
        let [high, low] = crc.to_be_bytes();
        crc = t7[usize::from(high ^ b0)]
            ^ t6[usize::from(low ^ b1)]
            ^ t5[usize::from(b2)]
            ^ t4[usize::from(b3)]
            ^ t3[usize::from(b4)]
            ^ t2[usize::from(b5)]
            ^ t1[usize::from(b6)]
            ^ t0[usize::from(b7)];
    }
    for &byte in chunks.remainder() {
        let [high, _] = crc.to_be_bytes();
        crc = (crc << 8) ^ t0[usize::from(high ^ byte)];
    }
    crc
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reference(data: &[u8]) -> u16 {
        crc16::State::<crc16::XMODEM>::calculate(data)
    }

    #[test]
    fn check_value_and_every_length_around_the_step() {
        assert_eq!(xmodem(b"123456789"), 0x31c3, "the XMODEM check value");
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        for len in 0..=data.len() {
            assert_eq!(
                xmodem(&data[..len]),
                reference(&data[..len]),
                "length {len}"
            );
        }
    }

    proptest! {
        #[test]
        fn matches_the_crc16_crate(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(xmodem(&data), reference(&data));
        }
    }
}
