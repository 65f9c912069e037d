//! Submit-to-dispatch latencies of the last `CAP` dispatches, for percentiles.
//!
//! Percentiles are read from a histogram of the window with buckets 1% wide, kept beside the
//! ring that says which sample leaves the window next: a read is a walk over a few thousand
//! counters, not a sort of up to a million samples. Stats are read by `dockyard top`, by
//! metrics scrapes and by benchmarks polling for completion, inside the scheduler's loop, so
//! sorting there cost a tenth of the loop under load.

const CAP: usize = 1 << 20;
/// Bucket `i` holds samples in [MIN_MS * GROWTH^i, MIN_MS * GROWTH^(i+1)).
const MIN_MS: f64 = 0.001;
const GROWTH: f64 = 1.01;
/// Up to about 10^7 ms (three hours); longer waits land in the last bucket.
const BUCKETS: usize = 2400;

pub struct LatencyRing {
    samples: Vec<f32>,
    next: usize,
    counts: Vec<u32>,
}

impl Default for LatencyRing {
    fn default() -> Self {
        LatencyRing {
            samples: Vec::new(),
            next: 0,
            counts: vec![0; BUCKETS],
        }
    }
}

fn bucket(ms: f32) -> usize {
    let ms = f64::from(ms);
    if ms.is_nan() || ms <= MIN_MS {
        return 0;
    }
    ((ms / MIN_MS).ln() / GROWTH.ln()).floor().clamp(0.0, (BUCKETS - 1) as f64) as usize
}

/// The middle (geometric) of bucket `i`: within half a percent of every sample in it.
fn value(i: usize) -> f64 {
    MIN_MS * GROWTH.powf(i as f64 + 0.5)
}

impl LatencyRing {
    pub fn push(&mut self, ms: f64) {
        let s = ms as f32;
        if self.samples.len() < CAP {
            self.samples.push(s);
        } else {
            let old = std::mem::replace(&mut self.samples[self.next], s);
            let b = bucket(old);
            self.counts[b] = self.counts[b].saturating_sub(1);
            self.next = (self.next + 1) % CAP;
        }
        self.counts[bucket(s)] += 1;
    }

    /// The `p`th percentile (nearest rank) of the window, to within 1%; 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.samples.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * (n - 1) as f64).round() as u64 + 1;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return value(i);
            }
        }
        value(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 0.01
    }

    #[test]
    fn percentiles_are_within_one_percent_of_the_sorted_samples() {
        let mut r = LatencyRing::default();
        for i in 1..=100 {
            r.push(f64::from(i));
        }
        assert!(close(r.percentile(50.0), 51.0), "{}", r.percentile(50.0));
        assert!(close(r.percentile(99.0), 99.0), "{}", r.percentile(99.0));
        assert!(close(r.percentile(0.0), 1.0), "{}", r.percentile(0.0));
        assert!(close(r.percentile(100.0), 100.0), "{}", r.percentile(100.0));
        assert_eq!(LatencyRing::default().percentile(50.0), 0.0);
    }

    #[test]
    fn samples_leaving_the_window_leave_the_histogram() {
        let mut r = LatencyRing::default();
        for _ in 0..CAP {
            r.push(1000.0);
        }
        assert!(close(r.percentile(50.0), 1000.0));
        // A full window later, only the new samples count.
        for _ in 0..CAP {
            r.push(2.0);
        }
        assert!(close(r.percentile(99.0), 2.0), "{}", r.percentile(99.0));
        assert_eq!(r.counts.iter().map(|c| u64::from(*c)).sum::<u64>(), CAP as u64);
    }

    #[test]
    fn extremes_land_in_the_end_buckets() {
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(f32::NAN), 0);
        assert_eq!(bucket(1e12), BUCKETS - 1);
    }
}
