//! Which broker host to try next, as oslo.messaging's rabbit driver does it: the hosts are
//! shuffled once at start (so a fleet of nodes given the same URL spreads over the cluster
//! instead of all landing on its first host), then tried in that order, round after round.
//! A session that ends moves on to the next host at once; only a whole round of hosts that
//! all failed makes the caller back off. Pure: the shuffle's seed comes in, so the order is
//! a test's to check.

/// The order hosts are tried in, and where the daemon is in it.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Host indices in the order they are tried.
    order: Vec<usize>,
    /// Position in `order` of the host to try now.
    at: usize,
    /// Hosts that failed in a row since the last session (or the start).
    failures: usize,
}

/// What the caller does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the next host at once.
    Now,
    /// Every host failed in a row: back off, then start a new round.
    BackOff,
}

impl Rotation {
    /// `hosts` hosts (at least one is assumed; zero acts as one), shuffled by `seed`.
    pub fn new(hosts: usize, seed: u64) -> Self {
        let mut order: Vec<usize> = (0..hosts.max(1)).collect();
        let mut rng = SplitMix64(seed);
        // Fisher–Yates.
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        Self { order, at: 0, failures: 0 }
    }

    /// The host (its index in the URL) to try now.
    pub fn current(&self) -> usize {
        self.order[self.at]
    }

    /// The host after the current one (what a log line announces).
    pub fn following(&self) -> usize {
        self.order[(self.at + 1) % self.order.len()]
    }

    /// An attempt on the current host failed: move on to the next.
    pub fn failed(&mut self) -> Next {
        self.advance();
        self.failures += 1;
        if self.failures >= self.order.len() {
            self.failures = 0;
            Next::BackOff
        } else {
            Next::Now
        }
    }

    /// A session on the current host is up: the failures so far are forgotten.
    pub fn connected(&mut self) {
        self.failures = 0;
    }

    /// The session on the current host ended: the next host is tried at once, and the one
    /// just lost comes last in the new round.
    pub fn lost(&mut self) {
        self.advance();
        self.failures = 0;
    }

    fn advance(&mut self) {
        self.at = (self.at + 1) % self.order.len();
    }
}

/// A seed that differs between processes and starts: the shuffle is for spreading a fleet,
/// not for secrecy.
pub fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Steele, Lea and Flood's SplitMix64: a few lines, good enough to shuffle a handful of hosts.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn round(r: &Rotation) -> Vec<usize> {
        let mut r = r.clone();
        (0..r.order.len())
            .map(|_| {
                let h = r.current();
                r.failed();
                h
            })
            .collect()
    }

    #[test]
    fn given_a_seed_when_shuffling_then_every_host_is_in_the_order_once_and_seeds_differ() {
        let orders: BTreeSet<Vec<usize>> = (0..64).map(|s| round(&Rotation::new(5, s))).collect();
        for order in &orders {
            assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), (0..5).collect());
        }
        // 64 seeds over 120 orders: a shuffle, not a fixed order.
        assert!(orders.len() > 30, "{} distinct orders", orders.len());
        // The same seed gives the same order.
        assert_eq!(round(&Rotation::new(5, 7)), round(&Rotation::new(5, 7)));
        // Every host comes first for some seed.
        let firsts: BTreeSet<usize> = (0..64).map(|s| Rotation::new(5, s).current()).collect();
        assert_eq!(firsts.len(), 5);
    }

    #[test]
    fn given_failures_when_rotating_then_hosts_follow_in_order_and_a_full_round_backs_off() {
        let mut r = Rotation::new(3, 42);
        let order = round(&r);
        assert_eq!(r.current(), order[0]);
        assert_eq!(r.following(), order[1]);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), order[1]);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), order[2]);
        assert_eq!(r.failed(), Next::BackOff);
        // A new round starts where the order starts again.
        assert_eq!(r.current(), order[0]);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.failed(), Next::BackOff);
    }

    #[test]
    fn given_a_lost_session_when_rotating_then_the_next_host_is_tried_and_the_lost_one_last() {
        let mut r = Rotation::new(3, 9);
        let order = round(&r);
        assert_eq!(r.failed(), Next::Now); // order[0] down
        r.connected(); // order[1] serves
        assert_eq!(r.current(), order[1]);
        r.lost();
        assert_eq!(r.current(), order[2]);
        // A full round counts from the loss: order[2], order[0], then order[1] last.
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), order[0]);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), order[1]);
        assert_eq!(r.failed(), Next::BackOff);
    }

    #[test]
    fn given_one_host_when_rotating_then_it_behaves_as_a_single_broker() {
        let mut r = Rotation::new(1, 3);
        assert_eq!(r.current(), 0);
        r.lost();
        assert_eq!(r.current(), 0); // reconnect at once after a loss
        assert_eq!(r.failed(), Next::BackOff); // every failure backs off
        assert_eq!(r.failed(), Next::BackOff);
        assert_eq!(Rotation::new(0, 1).current(), 0);
    }
}
