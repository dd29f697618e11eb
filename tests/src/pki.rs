//! A small PKI for the certificate-mode DTLS tests: a root CA, an
//! intermediate CA under it, a server certificate under the intermediate
//! (for 127.0.0.1 and localhost), a client certificate under the root, a
//! second root nobody uses (the wrong CA) and an expired server
//! certificate, a server certificate for a name only, as PEM files in a
//! directory. ECDSA P-256 throughout (the
//! curve LwM2M's ECDHE-ECDSA suites use); keys are PKCS#8.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

/// The files, each a PEM path.
pub struct Pki {
    pub root: PathBuf,
    pub intermediate: PathBuf,
    /// The server's certificate followed by the intermediate's.
    pub server_chain: PathBuf,
    /// The server's certificate alone.
    pub server: PathBuf,
    pub server_key: PathBuf,
    pub client: PathBuf,
    pub client_key: PathBuf,
    /// A root that signed nothing here.
    pub other_root: PathBuf,
    /// Under the intermediate, valid 2000 to 2001.
    pub expired_chain: PathBuf,
    pub expired_key: PathBuf,
    /// Under the intermediate, for the name `lwm2m.test` only (no
    /// address): reachable through an IP URI only with that SNI.
    pub named_chain: PathBuf,
    pub named_key: PathBuf,
    /// The server's chain with the second root added to what it sends.
    pub chain_with_other_root: PathBuf,
}

struct Authority {
    params: CertificateParams,
    key: KeyPair,
}

fn named(name: &str, sans: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2099, 1, 1);
    params
}

fn authority(name: &str, issuer: Option<&Authority>) -> (Authority, String) {
    let mut params = named(name, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = match issuer {
        None => params.self_signed(&key).unwrap().pem(),
        Some(issuer) => params
            .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
            .unwrap()
            .pem(),
    };
    (Authority { params, key }, pem)
}

fn leaf(name: &str, sans: &[&str], issuer: &Authority, expired: bool) -> (String, String) {
    let mut params = named(name, sans);
    if expired {
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let pem = params
        .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
        .unwrap()
        .pem();
    (pem, key.serialize_pem())
}

impl Pki {
    /// Makes the PKI in `dir`.
    pub fn new(dir: &Path) -> Pki {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (root, root_pem) = authority("dmagent test root", None);
        let (intermediate, intermediate_pem) = authority("dmagent test intermediate", Some(&root));
        let (_, other_pem) = authority("another root", None);
        let sans = ["127.0.0.1", "::1", "localhost"];
        let (server_pem, server_key) = leaf("lwm2m server", &sans, &intermediate, false);
        let (expired_pem, expired_key) = leaf("lwm2m server", &sans, &intermediate, true);
        let (client_pem, client_key) = leaf("dmagent-cert", &[], &root, false);
        let (named_pem, named_key) = leaf("lwm2m.test", &["lwm2m.test"], &intermediate, false);
        Pki {
            root: write("root.pem", &root_pem),
            intermediate: write("intermediate.pem", &intermediate_pem),
            server_chain: write(
                "server-chain.pem",
                &format!("{server_pem}{intermediate_pem}"),
            ),
            server: write("server.pem", &server_pem),
            server_key: write("server.key", &server_key),
            client: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
            other_root: write("other-root.pem", &other_pem),
            expired_chain: write(
                "expired-chain.pem",
                &format!("{expired_pem}{intermediate_pem}"),
            ),
            expired_key: write("expired.key", &expired_key),
            named_chain: write("named-chain.pem", &format!("{named_pem}{intermediate_pem}")),
            named_key: write("named.key", &named_key),
            chain_with_other_root: write(
                "chain-with-other-root.pem",
                &format!("{server_pem}{intermediate_pem}{other_pem}"),
            ),
        }
    }
}
