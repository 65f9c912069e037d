//! Submit-to-dispatch latencies, kept in a bounded ring for percentiles.

const CAP: usize = 1 << 20;

#[derive(Default)]
pub struct LatencyRing {
    samples: Vec<f32>,
    next: usize,
}

impl LatencyRing {
    pub fn push(&mut self, ms: f64) {
        if self.samples.len() < CAP {
            self.samples.push(ms as f32);
        } else {
            self.samples[self.next] = ms as f32;
            self.next = (self.next + 1) % CAP;
        }
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let mut v = self.samples.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        f64::from(v[idx.min(v.len() - 1)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut r = LatencyRing::default();
        for i in 1..=100 {
            r.push(f64::from(i));
        }
        assert_eq!(r.percentile(50.0), 51.0);
        assert_eq!(r.percentile(99.0), 99.0);
    }
}
