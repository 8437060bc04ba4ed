//! The one small random generator the project needs: splitmix64. Seeded
//! choices (random sleeps, the seeded scheduler) must come out the same on
//! every machine and every run with the same seed.

/// splitmix64: a 64-bit state, one add and a few mixes per number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
