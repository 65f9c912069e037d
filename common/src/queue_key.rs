//! The one byte-sortable queue key: (priority desc, fair-share virtual time, sequence).
//!
//! Stored directly as a sled key, so a range scan from the start yields dispatch order.
//! Fair share is start-time fair queueing: each organisation's n-th task at a priority gets
//! virtual time `max(org counter, the priority's current virtual time)`, so organisations of
//! equal priority interleave instead of the first big submitter starving the rest.

pub const MAX_PRIORITY: i32 = 9;
pub const MIN_PRIORITY: i32 = 0;
pub const KEY_LEN: usize = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey([u8; KEY_LEN]);

impl QueueKey {
    pub fn new(priority: i32, vtime: u64, seq: u64) -> Self {
        let p = priority.clamp(MIN_PRIORITY, MAX_PRIORITY) as u8;
        let mut k = [0u8; KEY_LEN];
        // Higher priority must sort first.
        k[0] = (MAX_PRIORITY as u8) - p;
        k[1..9].copy_from_slice(&vtime.to_be_bytes());
        k[9..17].copy_from_slice(&seq.to_be_bytes());
        QueueKey(k)
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(QueueKey(b.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn priority(&self) -> i32 {
        MAX_PRIORITY - i32::from(self.0[0])
    }

    pub fn vtime(&self) -> u64 {
        u64::from_be_bytes(self.0[1..9].try_into().unwrap_or([0; 8]))
    }

    pub fn seq(&self) -> u64 {
        u64::from_be_bytes(self.0[9..17].try_into().unwrap_or([0; 8]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_sorts_first_then_vtime_then_seq() {
        let hi = QueueKey::new(9, 1_000, 5);
        let lo = QueueKey::new(0, 0, 0);
        assert!(hi.as_bytes() < lo.as_bytes());
        let a = QueueKey::new(3, 1, 100);
        let b = QueueKey::new(3, 2, 1);
        assert!(a.as_bytes() < b.as_bytes());
        let c = QueueKey::new(3, 2, 2);
        assert!(b.as_bytes() < c.as_bytes());
    }

    #[test]
    fn fields_round_trip() {
        let k = QueueKey::new(7, 123, 456);
        let k2 = QueueKey::from_bytes(k.as_bytes()).expect("17 bytes");
        assert_eq!((k2.priority(), k2.vtime(), k2.seq()), (7, 123, 456));
    }
}
