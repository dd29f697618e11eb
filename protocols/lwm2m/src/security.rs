//! What a secured (coaps://) account authenticates with: the LwM2M
//! Security object's mode (/0/x/2) and key material (/0/x/3, 4, 5, 15),
//! in the form the DTLS layer takes. Built in every build: a build
//! without DTLS still reads accounts, and refuses the secured ones.

use std::fmt;

/// How the client and a server authenticate each other (LwM2M Core
/// §7.1, /0/x/2).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Security Mode 0: a pre-shared key and its identity.
    Psk { identity: Vec<u8>, key: Vec<u8> },
    /// Security Mode 2: X.509 certificates.
    Certificate(Certificates),
}

/// Security Mode 2 (Certificate, LwM2M Core §7.1.3).
#[derive(Clone, PartialEq, Eq)]
pub struct Certificates {
    /// The client's certificate, DER (/0/x/3): one certificate, or the
    /// client's followed by the intermediates that certify it, the DER
    /// encodings one after another.
    pub chain: Vec<u8>,
    /// The client's private key (/0/x/5): PKCS#8 DER, ECDSA P-256.
    pub private_key: Vec<u8>,
    /// The server's certificate or a CA's, DER (/0/x/4): what
    /// [`Certificates::usage`] says it is.
    pub server: Vec<u8>,
    pub usage: CertificateUsage,
    /// Trust anchors for the usages that validate a path (0 and 1), DER:
    /// the agent's configured CA file. Not in the Security object.
    pub trust_anchors: Vec<Vec<u8>>,
}

/// How the Server Public Key (/0/x/4) is matched against the
/// certificates the server presents (/0/x/15; RFC 6698 §2.1.1 and RFC
/// 7671 give the semantics; absent means 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateUsage {
    /// 0, PKIX-TA: /0/x/4 is a CA that must be in the server's validated
    /// path, which ends at a configured trust anchor.
    CaConstraint,
    /// 1, PKIX-EE: /0/x/4 is the server's own certificate, and the path
    /// must also validate to a configured trust anchor.
    ServiceCertificateConstraint,
    /// 2, DANE-TA: /0/x/4 is the trust anchor the server's path must end
    /// at; no other anchor is needed.
    TrustAnchorAssertion,
    /// 3, DANE-EE: /0/x/4 is the server's own certificate, matched as it
    /// is: no path, no name and no validity checks (RFC 7671 §5.1).
    DomainIssuedCertificate,
}

impl CertificateUsage {
    /// The usage of a /0/x/15 value, `None` outside 0..=3.
    pub fn from_value(value: i64) -> Option<CertificateUsage> {
        Some(match value {
            0 => CertificateUsage::CaConstraint,
            1 => CertificateUsage::ServiceCertificateConstraint,
            2 => CertificateUsage::TrustAnchorAssertion,
            3 => CertificateUsage::DomainIssuedCertificate,
            _ => return None,
        })
    }

    pub fn value(self) -> u8 {
        match self {
            CertificateUsage::CaConstraint => 0,
            CertificateUsage::ServiceCertificateConstraint => 1,
            CertificateUsage::TrustAnchorAssertion => 2,
            CertificateUsage::DomainIssuedCertificate => 3,
        }
    }

    /// Whether the server's path is validated to a configured anchor.
    pub fn needs_trust_anchors(self) -> bool {
        matches!(
            self,
            CertificateUsage::CaConstraint | CertificateUsage::ServiceCertificateConstraint
        )
    }
}

impl Credentials {
    /// Whether these are certificates whose usage (0 or 1) validates the
    /// server's path to configured trust anchors.
    pub fn needs_trust_anchors(&self) -> bool {
        matches!(self, Credentials::Certificate(c) if c.usage.needs_trust_anchors())
    }
}

/// Secrets are never printed: a `{:?}` of an account ends up in logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Psk { identity, .. } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .field("key", &"<secret>")
                .finish(),
            Credentials::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
        }
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("chain", &format_args!("{} bytes", self.chain.len()))
            .field("private_key", &"<secret>")
            .field("server", &format_args!("{} bytes", self.server.len()))
            .field("usage", &self.usage)
            .field("trust_anchors", &self.trust_anchors.len())
            .finish()
    }
}

/// The DER certificates laid one after another in `bytes` (/0/x/3 may
/// hold a chain), each by its outer SEQUENCE's length (X.690 §8.1.3).
/// Fails on anything that is not a whole number of DER SEQUENCEs.
pub fn split_der(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let length = der_length(bytes)
            .ok_or_else(|| "not a DER certificate (truncated or not a SEQUENCE)".to_owned())?;
        out.push(&bytes[..length]);
        bytes = &bytes[length..];
    }
    if out.is_empty() {
        return Err("empty".into());
    }
    Ok(out)
}

/// The whole length (header and content) of the DER SEQUENCE at the
/// start of `bytes`, if it is one and is all there.
fn der_length(bytes: &[u8]) -> Option<usize> {
    if *bytes.first()? != 0x30 {
        return None;
    }
    let first = usize::from(*bytes.get(1)?);
    let (header, content) = if first < 0x80 {
        (2, first)
    } else {
        // Long form: 1 to 4 length bytes is plenty for a certificate.
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let content = bytes
            .get(2..2 + count)?
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (2 + count, content)
    };
    let total = header.checked_add(content)?;
    (total <= bytes.len()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_der_is_split_and_a_truncated_one_refused() {
        let short = [0x30, 0x03, 1, 2, 3];
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        let both: Vec<u8> = short.iter().chain(long.iter()).copied().collect();
        assert_eq!(split_der(&both).unwrap(), vec![&short[..], &long[..]]);
        assert!(split_der(&both[..both.len() - 1]).is_err());
        assert!(split_der(&[0x04, 0x00]).is_err());
        assert!(split_der(&[]).is_err());
        assert!(split_der(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let psk = Credentials::Psk {
            identity: b"dev".to_vec(),
            key: b"sekrit".to_vec(),
        };
        let certificates = Credentials::Certificate(Certificates {
            chain: vec![1, 2],
            private_key: b"sekrit".to_vec(),
            server: vec![],
            usage: CertificateUsage::DomainIssuedCertificate,
            trust_anchors: vec![],
        });
        for credentials in [psk, certificates] {
            let text = format!("{credentials:?}");
            assert!(
                !text.contains("sekrit") && !text.contains("115, 101"),
                "{text}"
            );
        }
    }
}
