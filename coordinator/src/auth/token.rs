//! API tokens: `dyk_<id>_<secret>`. The id names the stored record (and is what operators
//! list and revoke); only the SHA-256 of the secret is stored, and it is compared in
//! constant time so response timing says nothing about how much of a guess was right.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const TOKEN_PREFIX: &str = "dyk_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A stored token: never the secret itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// The organisation the token acts for; `None` for an admin token.
    pub org: Option<String>,
    pub admin: bool,
    #[serde(default)]
    pub description: String,
    pub created_at_ms: i64,
    /// Lowercase hex SHA-256 of the secret part.
    pub secret_sha256: String,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub revoked_at_ms: i64,
    /// 0 = never.
    #[serde(default)]
    pub expires_at_ms: i64,
}

impl TokenRecord {
    pub fn matches(&self, secret: &str) -> bool {
        let want = match hex::decode(&self.secret_sha256) {
            Ok(b) => b,
            Err(_) => return false,
        };
        bool::from(sha256(secret.as_bytes()).as_slice().ct_eq(&want))
    }
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Constant-time comparison of a presented secret with the digest of a configured one
/// (the admin bootstrap token, the agents' join token).
pub fn matches_digest(presented: &str, digest: &[u8; 32]) -> bool {
    bool::from(sha256(presented.as_bytes()).ct_eq(digest))
}

/// A new token: (id, the full token to hand out once, the digest to store).
pub fn generate() -> (String, String, String) {
    let id = hex::encode(rand::random::<[u8; ID_HEX / 2]>());
    let secret = hex::encode(rand::random::<[u8; SECRET_HEX / 2]>());
    let digest = hex::encode(sha256(secret.as_bytes()));
    (id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"), digest)
}

/// Splits a presented token into (id, secret); `None` when it is not in our format.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    let hex_ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex_ok(id, ID_HEX) && hex_ok(secret, SECRET_HEX)).then_some((id, secret))
}

/// Token ids as operators type them (`dockyard admin token revoke ID`).
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_HEX && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_match_only_their_own_secret() {
        let (id, token, digest) = generate();
        let (pid, secret) = parse(&token).expect("own format");
        assert_eq!(pid, id);
        assert!(valid_id(&id));
        let rec = TokenRecord {
            id: id.clone(),
            org: Some("chem".into()),
            admin: false,
            description: String::new(),
            created_at_ms: 0,
            secret_sha256: digest,
            revoked: false,
            revoked_at_ms: 0,
            expires_at_ms: 0,
        };
        assert!(rec.matches(secret));
        let (_, other, _) = generate();
        let (_, other_secret) = parse(&other).expect("format");
        assert!(!rec.matches(other_secret));
        // The stored record never holds the secret.
        assert!(!serde_json::to_string(&rec).expect("json").contains(secret));
    }

    #[test]
    fn foreign_or_malformed_tokens_do_not_parse() {
        for t in [
            "",
            "dyk_",
            "dyk_abc_def",
            "Bearer x",
            "dyk_0123456789abcdef",
            "xyz_0123456789abcdef_00",
        ] {
            assert!(parse(t).is_none(), "{t}");
        }
        let (_, token, _) = generate();
        assert!(parse(&token.to_uppercase()).is_none());
        assert!(parse(&format!("{token}0")).is_none());
    }

    #[test]
    fn configured_secrets_compare_by_digest() {
        let d = sha256(b"s3cret");
        assert!(matches_digest("s3cret", &d));
        assert!(!matches_digest("s3cre", &d));
    }
}
