//! How a process proves itself to etcd: TLS (a CA to verify the members, optionally a client
//! certificate for etcd's `--client-cert-auth`) and etcd's own users (`--etcd-user` with a
//! password read from a file). Everything is read once at start-up, so a missing or
//! unreadable file is a start-up error that names its flag, never a failure later.

use std::fmt;
use std::path::{Path, PathBuf};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::error::DockyardError;

/// The `--etcd-*` flags as given, before their files are read.
#[derive(Clone, Debug, Default)]
pub struct EtcdAccessFlags {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// What the flags' files held.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    user: Option<(String, String)>,
}

// The password stays out of logs and panics.
impl fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u.as_str()))
            .finish()
    }
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, DockyardError> {
    let bytes = std::fs::read(path).map_err(|e| DockyardError::invalid(field, format!("cannot read {}: {e}", path.display())))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DockyardError::invalid(field, format!("{} is empty", path.display())));
    }
    Ok(bytes)
}

impl EtcdAccess {
    /// Reads the files the flags name; `endpoints` must be `https://` exactly when TLS is on.
    pub fn load(flags: &EtcdAccessFlags, endpoints: &[String]) -> Result<Self, DockyardError> {
        let ca_pem = flags.ca.as_deref().map(|p| read("etcd_ca", p)).transpose()?;
        let identity = match (&flags.cert, &flags.key) {
            (Some(c), Some(k)) => Some((read("etcd_cert", c)?, read("etcd_key", k)?)),
            (None, None) => None,
            (Some(_), None) => return Err(DockyardError::invalid("etcd_key", "--etcd-cert needs --etcd-key (its private key)")),
            (None, Some(_)) => return Err(DockyardError::invalid("etcd_cert", "--etcd-key needs --etcd-cert")),
        };
        let user = match (&flags.user, &flags.password_file) {
            (Some(u), Some(p)) => {
                if u.trim().is_empty() {
                    return Err(DockyardError::invalid("etcd_user", "is empty"));
                }
                let raw = read("etcd_password_file", p)?;
                let pw = String::from_utf8(raw)
                    .map_err(|_| DockyardError::invalid("etcd_password_file", format!("{} is not UTF-8 text", p.display())))?;
                Some((u.trim().to_string(), pw.trim_end_matches(['\r', '\n']).to_string()))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(DockyardError::invalid(
                    "etcd_password_file",
                    "--etcd-user needs --etcd-password-file (a file holding the user's etcd password)",
                ))
            }
            (None, Some(_)) => return Err(DockyardError::invalid("etcd_user", "--etcd-password-file needs --etcd-user")),
        };
        let access = EtcdAccess { ca_pem, identity, user };
        let tls = access.ca_pem.is_some() || access.identity.is_some();
        for e in endpoints {
            let https = e.starts_with("https://");
            if tls && !https {
                return Err(DockyardError::invalid(
                    "etcd",
                    format!("{e}: TLS to etcd (--etcd-ca/--etcd-cert) needs https:// endpoints"),
                ));
            }
            if !tls && https {
                return Err(DockyardError::invalid(
                    "etcd_ca",
                    format!("{e} is https://: give --etcd-ca, the CA that signed the etcd members' certificates"),
                ));
            }
        }
        Ok(access)
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }

    pub fn tls(&self) -> bool {
        self.ca_pem.is_some() || self.identity.is_some()
    }

    /// Adds TLS and credentials to `opts`. Tokens of etcd's simple auth expire when idle;
    /// the client asks for a new one instead of failing the call.
    pub fn apply(&self, mut opts: ConnectOptions) -> ConnectOptions {
        if let Some((u, p)) = &self.user {
            opts = opts.with_user(u.clone(), p.clone()).with_auto_token_refresh(true);
        }
        if self.tls() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(tls);
        }
        opts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write");
        p
    }

    #[test]
    fn half_given_pairs_and_scheme_mismatches_are_refused_by_flag() {
        let d = tempfile::tempdir().expect("tmp");
        let pem = file(d.path(), "ca.pem", "-----BEGIN CERTIFICATE-----\n");
        let http = vec!["http://e:2379".to_string()];
        let https = vec!["https://e:2379".to_string()];
        let err = |f: EtcdAccessFlags, eps: &[String]| EtcdAccess::load(&f, eps).expect_err("refused").to_string();
        let cert_only = EtcdAccessFlags {
            cert: Some(pem.clone()),
            ..Default::default()
        };
        assert!(err(cert_only, &https).contains("etcd_key"));
        let user_only = EtcdAccessFlags {
            user: Some("coordinator".into()),
            ..Default::default()
        };
        assert!(err(user_only, &http).contains("etcd_password_file"));
        let tls_plain = EtcdAccessFlags {
            ca: Some(pem.clone()),
            ..Default::default()
        };
        assert!(err(tls_plain, &http).contains("https://"));
        let empty = EtcdAccessFlags {
            user: Some("u".into()),
            password_file: Some(file(d.path(), "pw", "\n")),
            ..Default::default()
        };
        assert!(err(empty, &http).contains("is empty"));
        let missing = EtcdAccessFlags {
            ca: Some(d.path().join("nope.pem")),
            ..Default::default()
        };
        assert!(err(missing, &https).contains("etcd_ca"));
    }

    #[test]
    fn the_password_is_read_whole_and_never_printed() {
        let d = tempfile::tempdir().expect("tmp");
        let f = EtcdAccessFlags {
            user: Some("coordinator".into()),
            password_file: Some(file(d.path(), "pw", "s3cret with spaces \n")),
            ..Default::default()
        };
        let a = EtcdAccess::load(&f, &["http://e:2379".to_string()]).expect("loads");
        assert_eq!(a.user.as_ref().map(|(_, p)| p.as_str()), Some("s3cret with spaces "));
        assert!(!format!("{a:?}").contains("s3cret"));
        assert!(!a.tls());
    }
}
