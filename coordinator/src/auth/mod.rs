//! Tenants and authentication: who is calling (an admin, an organisation, an agent), what
//! each organisation may use, and the token records behind it.
//!
//! - Off by default: without `--admin-token-file` every client call is the local admin of
//!   organisation `default` (today's zero-config behaviour), and without
//!   `--join-token-file`/`--tls-client-ca` agents need nothing.
//! - One tower layer ([`layer::AuthLayer`]) authenticates every request and puts the
//!   [`Caller`] in the request extensions; handlers scope what they return with it.
//! - Tokens are `dyk_<id>_<secret>`; the [`TokenStore`] port keeps only the secret's
//!   SHA-256 (sled on one coordinator, etcd in cluster mode). Every coordinator keeps an
//!   in-memory copy, refreshed by the etcd watch in cluster mode; a revocation bumps a
//!   `watch` channel that open streams select on ([`guard::until_revoked`]).
//! - Limits per organisation ([`Limits`], in [`quota`]) are read by the scheduler (queued
//!   tasks at submission, running tasks at dispatch) through the shared [`QuotaTable`];
//!   bytes stored are a persisted counter in the store, charged in [`usage`].

pub mod etcd;
pub mod guard;
pub mod layer;
pub mod quota;
pub mod store;
pub mod tls;
pub mod token;
pub mod usage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use tracing::info;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;
use dockyard_common::time::now_ms;

pub use self::quota::{Limits, QuotaTable};
pub use self::store::{SledTokens, TokenStore};
pub use self::token::TokenRecord;
pub use self::usage::Charge;

/// Files behind authentication and TLS, as configured (read when the server starts).
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// The bootstrap admin secret; its presence turns client authentication on.
    pub admin_token_file: Option<PathBuf>,
    /// The secret agents present on AgentService calls.
    pub join_token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Agents may authenticate with a client certificate signed by this CA (mTLS).
    pub tls_client_ca: Option<PathBuf>,
}

impl AuthConfig {
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }
}

/// What a caller is allowed to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Org(OrgId),
    Agent,
}

/// The authenticated caller, in every request's extensions once the auth layer ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The stored token it used, for streams to re-check on revocation; `None` for the
    /// bootstrap admin secret, the join token, client certificates and auth off.
    pub token_id: Option<String>,
}

impl Caller {
    /// With authentication off: everything is the admin of organisation `default`.
    pub fn local_admin() -> Self {
        Caller {
            role: Role::Admin,
            token_id: None,
        }
    }

    pub fn agent() -> Self {
        Caller {
            role: Role::Agent,
            token_id: None,
        }
    }

    /// The caller the auth layer identified. Its absence is a wiring bug: fail closed.
    pub fn of<T>(r: &tonic::Request<T>) -> Result<Caller, DockyardError> {
        r.extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| DockyardError::Internal("no caller identity on the request (the auth layer is missing)".into()))
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The organisation new jobs and uploads belong to; an admin's go to `default`.
    pub fn org(&self) -> OrgId {
        match &self.role {
            Role::Org(o) => o.clone(),
            _ => OrgId::default_org(),
        }
    }

    /// May this caller see objects of organisation `org`? An admin sees every organisation.
    pub fn sees(&self, org: &str) -> bool {
        match &self.role {
            Role::Admin => true,
            Role::Org(o) => o.as_str() == org,
            Role::Agent => false,
        }
    }
}

/// Reads a secret from a file: trimmed, non-empty.
pub fn read_secret(what: &str, path: &Path) -> Result<String, DockyardError> {
    let s = std::fs::read_to_string(path).map_err(|e| DockyardError::invalid(what, format!("cannot read {}: {e}", path.display())))?;
    let s = s.trim().to_string();
    if s.len() < 16 {
        return Err(DockyardError::invalid(
            what,
            format!(
                "{} holds {} characters; use a random secret of at least 16",
                path.display(),
                s.len()
            ),
        ));
    }
    Ok(s)
}

pub struct Auth {
    /// Digest of the bootstrap admin secret; `Some` turns client authentication on.
    admin: Option<[u8; 32]>,
    join: Option<[u8; 32]>,
    /// Agents may authenticate with a verified client certificate.
    client_certs: bool,
    store: Arc<dyn TokenStore>,
    tokens: RwLock<HashMap<String, TokenRecord>>,
    quotas: QuotaTable,
    /// Bumped on every revocation; long-lived streams wait on it and re-check their token.
    revocations: watch::Sender<u64>,
}

/// Where a call goes decides what it needs (see [`layer::access`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Health, reflection, `AdminService/GetLeader`.
    Open,
    /// JobService: an organisation or an admin.
    Client,
    /// AdminService: the admin role.
    Admin,
    /// AgentService: the join token or a client certificate, when either is configured.
    Agent,
}

const NO_TOKEN: &str = "missing credentials: send `authorization: Bearer TOKEN` (dockyard --token TOKEN or DOCKYARD_TOKEN); \
an admin creates organisation tokens with `dockyard admin token create --org ORG`";
const BAD_TOKEN: &str = "the token is not valid (unknown or mistyped); check --token / DOCKYARD_TOKEN, or ask an admin for a new one";
const AGENT_HINT: &str = "agents must present the cluster join token (dockyard-agent --join-token-file FILE) \
or a client certificate signed by the coordinator's --tls-client-ca (dockyard-agent --tls-cert/--tls-key)";

impl Auth {
    /// Reads the configured secrets and loads tokens and limits from `store`.
    pub async fn open(cfg: &AuthConfig, store: Arc<dyn TokenStore>, quotas: QuotaTable) -> Result<Arc<Auth>, DockyardError> {
        let digest = |what: &str, p: &Option<PathBuf>| -> Result<Option<[u8; 32]>, DockyardError> {
            p.as_deref()
                .map(|p| read_secret(what, p).map(|s| token::sha256(s.as_bytes())))
                .transpose()
        };
        let admin = digest("admin_token_file", &cfg.admin_token_file)?;
        let join = digest("join_token_file", &cfg.join_token_file)?;
        if admin.is_some() && admin == join {
            return Err(DockyardError::invalid("join_token_file", "must differ from the admin token"));
        }
        let client_certs = cfg.tls_client_ca.is_some();
        if admin.is_some() && join.is_none() && !client_certs {
            // Otherwise anyone could register as an agent and be sent every organisation's inputs.
            return Err(DockyardError::invalid(
                "admin_token_file",
                "with authentication on, agents must authenticate too: add --join-token-file FILE or --tls-client-ca FILE",
            ));
        }
        let (tokens, limits) = store.load().await?;
        for (org, l) in limits {
            quotas.set(org, l);
        }
        info!(
            clients = if admin.is_some() { "token" } else { "open (auth off)" },
            agents = match (join.is_some(), client_certs) {
                (true, true) => "join token or client certificate",
                (true, false) => "join token",
                (false, true) => "client certificate",
                (false, false) => "open",
            },
            tokens = tokens.len(),
            "authentication"
        );
        Ok(Arc::new(Auth {
            admin,
            join,
            client_certs,
            store,
            tokens: RwLock::new(tokens.into_iter().map(|t| (t.id.clone(), t)).collect()),
            quotas,
            revocations: watch::channel(0).0,
        }))
    }

    pub fn enabled(&self) -> bool {
        self.admin.is_some()
    }

    pub fn quotas(&self) -> &QuotaTable {
        &self.quotas
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    fn cached(&self, id: &str) -> Option<TokenRecord> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Records a token (created here, or seen in etcd); a revocation wakes open streams.
    pub fn apply_token(&self, t: TokenRecord) {
        let revoked = t.revoked;
        let id = t.id.clone();
        let changed = self
            .tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t.id.clone(), t)
            .is_none_or(|old| old.revoked != revoked);
        if revoked && changed {
            info!(token = %id, "token revoked");
            self.revocations.send_modify(|n| *n += 1);
        }
    }

    /// Is the stored token `id` still good? (Streams ask after each revocation.)
    pub fn still_valid(&self, id: &str) -> bool {
        self.cached(id).is_some_and(|t| !t.revoked)
    }

    /// Who presents `bearer` (the token without `Bearer `) for a call needing `access`;
    /// `verified_cert`: the TLS peer showed a certificate our client CA verified.
    pub async fn authenticate(&self, access: Access, bearer: Option<&str>, verified_cert: bool) -> Result<Caller, DockyardError> {
        match access {
            Access::Open => Ok(Caller::local_admin()),
            Access::Agent => self.authenticate_agent(bearer, verified_cert),
            Access::Client | Access::Admin => {
                let caller = self.authenticate_client(bearer).await?;
                if access == Access::Admin && !caller.is_admin() {
                    return Err(DockyardError::PermissionDenied(
                        "this call needs the admin token; an organisation token cannot manage nodes, tokens or quotas".into(),
                    ));
                }
                Ok(caller)
            }
        }
    }

    fn authenticate_agent(&self, bearer: Option<&str>, verified_cert: bool) -> Result<Caller, DockyardError> {
        if self.join.is_none() && !self.client_certs {
            return Ok(Caller::agent());
        }
        if verified_cert && self.client_certs {
            return Ok(Caller::agent());
        }
        match (bearer, &self.join) {
            (Some(t), Some(d)) if token::matches_digest(t, d) => Ok(Caller::agent()),
            (Some(_), _) => Err(DockyardError::Unauthenticated(format!(
                "the agent's credentials are not valid for this coordinator; {AGENT_HINT}"
            ))),
            (None, _) => Err(DockyardError::Unauthenticated(format!("missing agent credentials: {AGENT_HINT}"))),
        }
    }

    async fn authenticate_client(&self, bearer: Option<&str>) -> Result<Caller, DockyardError> {
        let Some(admin) = &self.admin else {
            return Ok(Caller::local_admin());
        };
        let t = bearer.ok_or_else(|| DockyardError::Unauthenticated(NO_TOKEN.into()))?;
        if token::matches_digest(t, admin) {
            return Ok(Caller::local_admin());
        }
        let Some((id, secret)) = token::parse(t) else {
            if self.join.as_ref().is_some_and(|d| token::matches_digest(t, d)) {
                return Err(DockyardError::PermissionDenied(
                    "the join token is for agents only; clients need an API token".into(),
                ));
            }
            return Err(DockyardError::Unauthenticated(BAD_TOKEN.into()));
        };
        let rec = match self.cached(id) {
            Some(r) => r,
            // In cluster mode a token made moments ago may not have reached our watch yet.
            None => match self.store.get_token(id).await? {
                Some(r) => {
                    self.apply_token(r.clone());
                    r
                }
                None => return Err(DockyardError::Unauthenticated(BAD_TOKEN.into())),
            },
        };
        // Only someone holding the secret learns that a token exists or was revoked.
        if !rec.matches(secret) {
            return Err(DockyardError::Unauthenticated(BAD_TOKEN.into()));
        }
        if rec.revoked {
            return Err(DockyardError::Unauthenticated(format!(
                "token {id} was revoked; ask an admin for a new one (dockyard admin token create --org ORG)"
            )));
        }
        if rec.expires_at_ms > 0 && now_ms() >= rec.expires_at_ms {
            return Err(DockyardError::Unauthenticated(format!(
                "token {id} has expired; ask an admin for a new one (dockyard admin token create --org ORG --ttl-s N)"
            )));
        }
        let role = match (&rec.org, rec.admin) {
            (_, true) => Role::Admin,
            (Some(org), false) => Role::Org(OrgId::parse(org)?),
            (None, false) => {
                return Err(DockyardError::Internal(format!(
                    "token {id} has neither an organisation nor the admin role"
                )))
            }
        };
        Ok(Caller {
            role,
            token_id: Some(rec.id),
        })
    }

    /// Makes a token; returns its record and the one-time secret token.
    pub async fn create_token(&self, org: Option<OrgId>, admin: bool, description: &str) -> Result<(TokenRecord, String), DockyardError> {
        self.create_token_for(org, admin, description, 0).await
    }

    /// Like [`create_token`](Self::create_token), expiring `ttl_s` seconds from now (0: never).
    pub async fn create_token_for(
        &self,
        org: Option<OrgId>,
        admin: bool,
        description: &str,
        ttl_s: u64,
    ) -> Result<(TokenRecord, String), DockyardError> {
        // Ten years: beyond that, "never" (0) says it better, and the sum cannot overflow.
        if ttl_s > 10 * 365 * 86_400 {
            return Err(DockyardError::invalid(
                "ttl_s",
                format!("{ttl_s} s is more than ten years; use 0 for a token that does not expire"),
            ));
        }
        if admin == org.is_some() {
            return Err(DockyardError::invalid(
                "org",
                "give an organisation (--org ORG) or ask for an admin token, not both",
            ));
        }
        if description.chars().count() > 200 {
            return Err(DockyardError::invalid("description", "at most 200 characters"));
        }
        let (id, secret_token, digest) = token::generate();
        let rec = TokenRecord {
            id,
            org: org.map(|o| o.to_string()),
            admin,
            description: description.chars().filter(|c| !c.is_control()).collect(),
            created_at_ms: now_ms(),
            secret_sha256: digest,
            revoked: false,
            revoked_at_ms: 0,
            expires_at_ms: if ttl_s == 0 { 0 } else { now_ms() + (ttl_s as i64) * 1000 },
        };
        self.store.put_token(&rec).await?;
        self.apply_token(rec.clone());
        info!(token = %rec.id, org = ?rec.org, admin, "token created");
        Ok((rec, secret_token))
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, DockyardError> {
        if !token::valid_id(id) {
            return Err(DockyardError::invalid(
                "token_id",
                format!("'{id}' is not a token id (16 hex digits, as `dockyard admin token list` shows)"),
            ));
        }
        let mut rec = match self.cached(id) {
            Some(r) => r,
            None => self
                .store
                .get_token(id)
                .await?
                .ok_or_else(|| DockyardError::not_found(format!("token {id}")))?,
        };
        if !rec.revoked {
            rec.revoked = true;
            rec.revoked_at_ms = now_ms();
            self.store.put_token(&rec).await?;
        }
        self.apply_token(rec.clone());
        Ok(rec)
    }

    pub fn list_tokens(&self) -> Vec<TokenRecord> {
        let mut v: Vec<TokenRecord> = self.tokens.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn auth(admin: bool, join: bool) -> (tempfile::TempDir, Arc<Auth>) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = AuthConfig::default();
        if admin {
            let p = dir.path().join("admin");
            std::fs::write(&p, "admin-secret-0123456789\n").expect("write");
            cfg.admin_token_file = Some(p);
        }
        if join {
            let p = dir.path().join("join");
            std::fs::write(&p, "join-secret-0123456789").expect("write");
            cfg.join_token_file = Some(p);
        }
        let db = sled::open(dir.path().join("db")).expect("sled");
        let store = Arc::new(SledTokens::new(db.open_tree("t").expect("tree")));
        let a = Auth::open(&cfg, store, QuotaTable::default()).await.expect("open");
        (dir, a)
    }

    fn code(r: Result<Caller, DockyardError>) -> tonic::Code {
        match r {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        }
    }

    #[tokio::test]
    async fn auth_off_makes_everyone_the_default_admin() {
        let (_d, a) = auth(false, false).await;
        let c = a.authenticate(Access::Admin, None, false).await.expect("open");
        assert!(c.is_admin());
        assert_eq!(c.org(), OrgId::default_org());
        assert_eq!(a.authenticate(Access::Agent, None, false).await.expect("agent").role, Role::Agent);
    }

    #[tokio::test]
    async fn auth_on_needs_agent_credentials_too() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("admin");
        std::fs::write(&p, "admin-secret-0123456789").expect("write");
        let cfg = AuthConfig {
            admin_token_file: Some(p),
            ..AuthConfig::default()
        };
        let db = sled::open(dir.path().join("db")).expect("sled");
        let store = Arc::new(SledTokens::new(db.open_tree("t").expect("tree")));
        let e = Auth::open(&cfg, store, QuotaTable::default()).await.err().expect("refused");
        assert!(e.to_string().contains("--join-token-file"), "{e}");
    }

    #[tokio::test]
    async fn tokens_are_checked_scoped_and_revocable() {
        let (_d, a) = auth(true, true).await;
        assert_eq!(
            code(a.authenticate(Access::Client, None, false).await),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(a.authenticate(Access::Client, Some("nonsense"), false).await),
            tonic::Code::Unauthenticated
        );
        let admin = a
            .authenticate(Access::Admin, Some("admin-secret-0123456789"), false)
            .await
            .expect("admin");
        assert!(admin.is_admin() && admin.token_id.is_none());

        let chem = OrgId::parse("chem").expect("org");
        let (rec, tok) = a.create_token(Some(chem.clone()), false, "ci").await.expect("create");
        let c = a.authenticate(Access::Client, Some(&tok), false).await.expect("org token");
        assert_eq!(c.role, Role::Org(chem.clone()));
        assert!(c.sees("chem") && !c.sees("bio"));
        let e = a.authenticate(Access::Admin, Some(&tok), false).await.expect_err("not admin");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.to_string().contains("admin token"), "{e}");

        // A wrong secret for a real id looks exactly like an unknown token.
        let forged = format!("dyk_{}_{}", rec.id, "0".repeat(64));
        let e = a.authenticate(Access::Client, Some(&forged), false).await.expect_err("forged");
        assert_eq!(e.to_string(), BAD_TOKEN);

        let rx = a.subscribe();
        a.revoke_token(&rec.id).await.expect("revoke");
        assert!(rx.has_changed().expect("open"));
        assert!(!a.still_valid(&rec.id));
        let e = a.authenticate(Access::Client, Some(&tok), false).await.expect_err("revoked");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.to_string().contains("revoked"), "{e}");
        assert_eq!(a.list_tokens().len(), 1);
    }

    #[tokio::test]
    async fn agents_need_the_join_token_or_a_verified_certificate() {
        let (_d, a) = auth(true, true).await;
        assert_eq!(code(a.authenticate(Access::Agent, None, false).await), tonic::Code::Unauthenticated);
        assert_eq!(
            code(a.authenticate(Access::Agent, Some("wrong"), false).await),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(a.authenticate(Access::Agent, Some("join-secret-0123456789"), false).await),
            tonic::Code::Ok
        );
        // No client CA configured: a certificate alone proves nothing.
        assert_eq!(code(a.authenticate(Access::Agent, None, true).await), tonic::Code::Unauthenticated);
        // The join token is not a client credential.
        assert_eq!(
            code(a.authenticate(Access::Client, Some("join-secret-0123456789"), false).await),
            tonic::Code::PermissionDenied
        );
    }
}
