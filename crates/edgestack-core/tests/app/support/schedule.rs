//! Seeded schedules for the random consistency runs (`cache_consistency`, `failover_random`,
//! `services_random`): which seeds run, and the generator that draws each schedule from its seed.

/// The seeds a random run takes: `EDGESTACK_CONSISTENCY_SEED=n` replays seed `n` alone;
/// otherwise seeds 1 to `EDGESTACK_CONSISTENCY_SEEDS` (at least `default`, the test suite's
/// count), so a larger number searches wider and a failure names the seed to replay.
pub fn seeds(default: u64) -> std::ops::RangeInclusive<u64> {
    let number = |name: &str| std::env::var(name).ok().and_then(|n| n.parse::<u64>().ok());
    if let Some(seed) = number("EDGESTACK_CONSISTENCY_SEED") {
        return seed..=seed;
    }
    1..=number("EDGESTACK_CONSISTENCY_SEEDS").unwrap_or(default).max(default)
}

/// A schedule's draws: the same sequence for the same seed on every run (fastrand's generator,
/// the version locked in Cargo.lock).
pub struct Rng(fastrand::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.0.u64(..bound) }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
