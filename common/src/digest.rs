//! A SHA-256 held as its 32 bytes: a million-ligand spec keeps one per ligand, and the
//! 64-character hex string it is written as would double the spec's memory.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(data).into())
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Sha256(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Sha256::from_hex(&s).ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not a SHA-256 in hex")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_matches_the_string_digest() {
        let d = Sha256::of(b"CCO ethanol");
        assert_eq!(d.to_hex(), crate::artifact::sha256_hex(b"CCO ethanol"));
        assert_eq!(Sha256::from_hex(&d.to_hex()), Some(d));
        let json = serde_json::to_string(&d).expect("json");
        assert_eq!(serde_json::from_str::<Sha256>(&json).expect("back"), d);
        assert!(serde_json::from_str::<Sha256>("\"abc\"").is_err());
        assert_eq!(Sha256::from_hex("zz"), None);
    }
}
