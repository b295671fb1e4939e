//! PFCOUNT of several HyperLogLogs computed by the proxy from their raw strings, the way Redis
//! 7.0 counts a union (hyperloglog.c): every HLL's registers merged by maximum, then Otmar
//! Ertl's estimator (`hllCount`, used since Redis 5) over the merged registers. Pure: no I/O.
//!
//! A Redis HLL is a string: a 16-byte header (`HYLL`, the encoding — 0 dense, 1 sparse — three
//! unused bytes, a cached cardinality) and 16384 six-bit registers, packed (dense) or as runs
//! of opcodes (sparse: ZERO `00xxxxxx`, XZERO `01xxxxxx yyyyyyyy`, VAL `1vvvvvxx`).

/// Registers of a Redis HLL (2^14).
pub const REGISTERS: usize = 1 << 14;
/// Bits of the hash that pick the leading-zero count: 64 - 14.
const Q: usize = 50;
/// The header's size.
const HEADER: usize = 16;
/// A dense HLL's exact size: the header and 16384 six-bit registers.
const DENSE_SIZE: usize = HEADER + (REGISTERS * 6).div_ceil(8);
/// Redis' `HLL_ALPHA_INF`, 0.5/ln(2).
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// Redis' answer for a string that is not a HyperLogLog.
pub const NOT_AN_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
/// Redis' answer for a sparse HLL whose runs do not cover the registers exactly.
pub const CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";

/// Why a string could not be merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HllError {
    /// Not an HLL at all ([`NOT_AN_HLL`]).
    NotAnHll,
    /// A sparse HLL with bad runs ([`CORRUPT`]).
    Corrupt,
}

impl HllError {
    /// The error text Redis answers.
    pub fn message(self) -> &'static str {
        match self {
            HllError::NotAnHll => NOT_AN_HLL,
            HllError::Corrupt => CORRUPT,
        }
    }
}

/// The registers of a union: each the maximum over the HLLs merged into it.
pub struct Union {
    registers: Vec<u8>,
}

impl Default for Union {
    fn default() -> Union {
        Union {
            registers: vec![0; REGISTERS],
        }
    }
}

impl Union {
    /// Merge the HLL stored as `raw` (checked as Redis' `isHLLObjectOrReply`, then merged as
    /// `hllMerge`).
    pub fn merge(&mut self, raw: &[u8]) -> Result<(), HllError> {
        if raw.len() < HEADER || &raw[..4] != b"HYLL" || raw[4] > 1 {
            return Err(HllError::NotAnHll);
        }
        let body = &raw[HEADER..];
        if raw[4] == 0 {
            if raw.len() != DENSE_SIZE {
                return Err(HllError::NotAnHll);
            }
            for (i, max) in self.registers.iter_mut().enumerate() {
                *max = (*max).max(dense_register(body, i));
            }
            return Ok(());
        }
        self.merge_sparse(body)
    }

    fn merge_sparse(&mut self, body: &[u8]) -> Result<(), HllError> {
        let (mut at, mut i) = (0, 0usize);
        while let Some(&op) = body.get(at) {
            match op & 0xc0 {
                0x00 => {
                    i += usize::from(op & 0x3f) + 1;
                    at += 1;
                }
                0x40 => {
                    // A missing second byte reads as 0 (the string's terminator, in Redis).
                    let low = body.get(at + 1).copied().unwrap_or(0);
                    i += (usize::from(op & 0x3f) << 8 | usize::from(low)) + 1;
                    at += 2;
                }
                _ => {
                    let run = usize::from(op & 0x3) + 1;
                    let value = ((op >> 2) & 0x1f) + 1;
                    if i + run > REGISTERS {
                        break;
                    }
                    for max in &mut self.registers[i..i + run] {
                        *max = (*max).max(value);
                    }
                    i += run;
                    at += 1;
                }
            }
        }
        if i == REGISTERS {
            Ok(())
        } else {
            Err(HllError::Corrupt)
        }
    }

    /// The union's estimated cardinality (`hllCount`).
    pub fn count(&self) -> u64 {
        let mut histogram = [0u32; 64];
        for &r in &self.registers {
            histogram[usize::from(r)] += 1;
        }
        let m = REGISTERS as f64;
        let mut z = m * tau((m - f64::from(histogram[Q + 1])) / m);
        for j in (1..=Q).rev() {
            z += f64::from(histogram[j]);
            z *= 0.5;
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        (ALPHA_INF * m * m / z).round() as u64
    }
}

/// Register `i` of a dense HLL's packed registers (a byte past the end reads as 0).
fn dense_register(registers: &[u8], i: usize) -> u8 {
    let byte = i * 6 / 8;
    let shift = i * 6 % 8;
    let b0 = u16::from(registers.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> shift) | (b1 << (8 - shift))) & 63) as u8
}

/// Ertl's sigma function, iterated as Redis does (`hllSigma`).
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

/// Ertl's tau function, iterated as Redis does (`hllTau`).
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if before == z {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse HLL of `ops` after the header.
    fn sparse(ops: &[u8]) -> Vec<u8> {
        let mut raw = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        raw.extend_from_slice(ops);
        raw
    }

    /// The empty HLL Redis creates: one XZERO run of 16384.
    fn empty() -> Vec<u8> {
        sparse(&[0x7f, 0xff])
    }

    #[test]
    fn empty_and_single_registers_count_as_redis_does() {
        let mut union = Union::default();
        union.merge(&empty()).unwrap();
        assert_eq!(union.count(), 0);
        // PFADD of one element sets one register to a small value: Redis counts 1.
        // Register 100 = 3: XZERO 100, VAL(3, 1) = 1 00010 00, XZERO 16283 (16282 = 0x3f9a).
        let one = sparse(&[0x40, 99, 0b1000_1000, 0x7f, 0x9a]);
        let mut union = Union::default();
        union.merge(&one).unwrap();
        assert_eq!(union.count(), 1);
        // The same HLL twice is the same set.
        union.merge(&one).unwrap();
        assert_eq!(union.count(), 1);
    }

    #[test]
    fn dense_registers_unpack_six_bits_each() {
        let mut raw = b"HYLL\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        raw.resize(DENSE_SIZE, 0);
        // Register 0 = 5 (bits 0..6), register 1 = 63 (bits 6..12), register 16383 = 7.
        raw[HEADER] = 5 | (63 << 6);
        raw[HEADER + 1] = 0b1111;
        raw[DENSE_SIZE - 1] = 7 << 2;
        let body = &raw[HEADER..];
        assert_eq!(dense_register(body, 0), 5);
        assert_eq!(dense_register(body, 1), 63);
        assert_eq!(dense_register(body, 2), 0);
        assert_eq!(dense_register(body, REGISTERS - 1), 7);
        let mut union = Union::default();
        union.merge(&raw).unwrap();
        assert_eq!(union.registers[1], 63);
    }

    #[test]
    fn strings_that_are_not_hlls_are_refused() {
        let mut union = Union::default();
        assert_eq!(union.merge(b"hello"), Err(HllError::NotAnHll));
        assert_eq!(
            union.merge(b"HYLX\x01\0\0\0\0\0\0\0\0\0\0\0"),
            Err(HllError::NotAnHll)
        );
        assert_eq!(
            union.merge(b"HYLL\x02\0\0\0\0\0\0\0\0\0\0\0"),
            Err(HllError::NotAnHll)
        );
        // Dense of the wrong size.
        assert_eq!(
            union.merge(b"HYLL\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Err(HllError::NotAnHll)
        );
        // Sparse runs that stop short of, or run past, 16384 registers.
        assert_eq!(union.merge(&sparse(&[0x40, 0])), Err(HllError::Corrupt));
        assert_eq!(
            union.merge(&sparse(&[0x7f, 0xff, 0x00])),
            Err(HllError::Corrupt)
        );
        // A VAL run past the end stops the walk, as in Redis: the registers add up, accepted.
        assert_eq!(union.merge(&sparse(&[0x7f, 0xff, 0x80])), Ok(()));
        assert_eq!(HllError::Corrupt.message(), CORRUPT);
    }
}
