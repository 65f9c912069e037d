//! The coordinator's TLS (rustls): `--tls-cert/--tls-key` serve every service over TLS on
//! the one port; `--tls-client-ca` lets agents authenticate with a client certificate.
//!
//! Client certificates are optional at the TLS level (`client_auth_optional`): clients and
//! agents share the port, and the CLI has no certificate. A certificate that is presented
//! must chain to the CA (rustls refuses the handshake otherwise); the auth layer then
//! treats a verified certificate as an agent credential for AgentService only.

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use dockyard_common::error::DockyardError;

use super::AuthConfig;

fn read_pem(what: &str, path: &Path, marker: &str) -> Result<Vec<u8>, DockyardError> {
    let b = std::fs::read(path).map_err(|e| DockyardError::invalid(what, format!("cannot read {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&b).contains(marker) {
        return Err(DockyardError::invalid(
            what,
            format!("{} is not PEM (no '{marker}' block)", path.display()),
        ));
    }
    Ok(b)
}

/// `None` without `--tls-cert`; settings that only make sense with TLS are refused then.
pub fn server_config(cfg: &AuthConfig) -> Result<Option<ServerTlsConfig>, DockyardError> {
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            if cfg.tls_client_ca.is_some() {
                return Err(DockyardError::invalid(
                    "tls_client_ca",
                    "client certificates need TLS: add --tls-cert and --tls-key",
                ));
            }
            return Ok(None);
        }
        _ => return Err(DockyardError::invalid("tls_cert", "give both --tls-cert and --tls-key")),
    };
    let identity = Identity::from_pem(read_pem("tls_cert", cert, "CERTIFICATE")?, read_pem("tls_key", key, "PRIVATE KEY")?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &cfg.tls_client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read_pem("tls_client_ca", ca, "CERTIFICATE")?))
            .client_auth_optional(true);
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_configured_tls_is_refused_with_the_flag_to_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = AuthConfig {
            tls_cert: Some(dir.path().join("cert.pem")),
            ..AuthConfig::default()
        };
        assert!(server_config(&cfg).expect_err("no key").to_string().contains("--tls-key"));
        let cfg = AuthConfig {
            tls_client_ca: Some(dir.path().join("ca.pem")),
            ..AuthConfig::default()
        };
        assert!(server_config(&cfg).expect_err("no cert").to_string().contains("--tls-cert"));
        let p = dir.path().join("junk.pem");
        std::fs::write(&p, "hello").expect("write");
        let cfg = AuthConfig {
            tls_cert: Some(p.clone()),
            tls_key: Some(p),
            ..AuthConfig::default()
        };
        assert!(server_config(&cfg).expect_err("junk").to_string().contains("not PEM"));
        assert!(server_config(&AuthConfig::default()).expect("off").is_none());
    }
}
