//! Test certificates made at test time (rcgen): a CA, a server certificate for
//! 127.0.0.1/localhost, a client certificate, and a second CA that signed nothing of ours.

use std::path::Path;

use crate::{ClusterBuilder, TestCluster};

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("cannot write a test certificate");
}

fn arg(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

pub struct Pki {
    dir: tempfile::TempDir,
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by
    /// it, and a second CA that signed nothing of ours.
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let dir = tempfile::tempdir().expect("tmp");
        let ca = |name: &str, file: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().expect("key");
            let cert = p.self_signed(&key).expect("self-signed");
            write(dir.path(), file, &cert.pem());
            Issuer::new(p, key)
        };
        let issuer = ca("Dockyard test CA", "ca.pem");
        ca("Some other CA", "other-ca.pem");
        let leaf = |names: Vec<String>, eku: Vec<ExtendedKeyUsagePurpose>, stem: &str| {
            let mut p = CertificateParams::new(names).expect("params");
            p.extended_key_usages = eku;
            let key = KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &issuer).expect("signed");
            write(dir.path(), &format!("{stem}.pem"), &cert.pem());
            write(dir.path(), &format!("{stem}.key"), &key.serialize_pem());
        };
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            "server",
        );
        leaf(vec!["agent".into()], vec![ExtendedKeyUsagePurpose::ClientAuth], "client");
        // etcd dials itself with its serving certificate (its gRPC gateway), so it needs both.
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            "etcd-server",
        );
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        arg(&self.dir.path().join(name))
    }

    /// A coordinator serving TLS with the server certificate; harness calls trust the CA.
    pub fn tls_cluster(&self) -> ClusterBuilder {
        TestCluster::builder()
            .coordinator_arg("--tls-cert")
            .coordinator_arg(self.path("server.pem"))
            .coordinator_arg("--tls-key")
            .coordinator_arg(self.path("server.key"))
            .tls_ca(self.dir.path().join("ca.pem"))
    }
}
