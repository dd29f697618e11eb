//! A small seeded generator for what needs variety, not secrecy: CoAP
//! message IDs and tokens' start, retransmission and retry jitter. Secrets
//! (nonces, keys) come from the OS through `ring`.

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's
/// xorshift generators, scrambled", 2016).
#[derive(Debug, Clone)]
pub struct XorShift64Star(u64);

impl XorShift64Star {
    /// A generator from `seed` (any value; 0 is made odd).
    pub fn new(seed: u64) -> XorShift64Star {
        XorShift64Star(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat_and_stay_in_range() {
        let mut a = XorShift64Star::new(7);
        let mut b = XorShift64Star::new(7);
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        let mut zero = XorShift64Star::new(0);
        assert_ne!(zero.next_u64(), 0);
        for _ in 0..1000 {
            let u = a.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
