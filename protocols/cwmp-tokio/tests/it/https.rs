//! HTTPS to the ACS: a session over TLS to a loopback ACS whose
//! certificate the configured CA file vouches for, and a refused handshake
//! when it does not.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::Tree;
use dm_cwmp_tokio::http::{Credentials, HttpSession};
use dm_cwmp_tokio::{Config, TlsSettings};
use dm_objects::{CwmpSettings, Identity, Platform, Provisioning};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls::ServerConfig;

fn tree(acs_url: &str) -> Tree {
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network: Arc::new(MemoryNetwork::demo()),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                serial_number: "SN-TLS".into(),
                oui: "00D09E".into(),
                ..Identity::default()
            },
            cwmp: Some(CwmpSettings {
                acs_url: acs_url.into(),
                periodic_inform: true,
                periodic_interval: 3600,
                ..CwmpSettings::default()
            }),
            ..Provisioning::default()
        },
    )
    .unwrap();
    tree
}

/// A TLS ACS on loopback with a fresh self-signed certificate; returns
/// its port, the certificate's PEM and the bodies it receives.
async fn tls_acs() -> (u16, String, mpsc::UnboundedReceiver<String>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key =
        PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let reply = if body.contains("<cwmp:Inform>") {
                            r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">1</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse></soap-env:Body></soap-env:Envelope>"#.to_owned()
                        } else {
                            String::new()
                        };
                        let _ = tx.send(body);
                        let mut response = Response::new(Full::new(Bytes::from(reply.clone())));
                        if reply.is_empty() {
                            *response.status_mut() = StatusCode::NO_CONTENT;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, cert_pem, rx)
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_over_https_with_the_configured_ca() {
    let (port, cert_pem, mut bodies) = tls_acs().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert_pem).unwrap();
    let tree = Arc::new(Mutex::new(tree(&format!("https://127.0.0.1:{port}/acs"))));
    let (host_tx, _host_rx) = mpsc::channel(4);
    let (_commands, commands) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    let driver = tokio::spawn(dm_cwmp_tokio::run(
        Arc::clone(&tree),
        Config {
            connection_request: None,
            http_timeout: Duration::from_secs(10),
            tls: TlsSettings {
                ca_file: Some(ca_file),
                client_certificate: None,
            },
            ..Config::default()
        },
        host_tx,
        commands,
        stop,
    ));
    let inform = tokio::time::timeout(Duration::from_secs(20), bodies.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(inform.contains("<SerialNumber>SN-TLS</SerialNumber>"));
    let empty = tokio::time::timeout(Duration::from_secs(20), bodies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(empty, "");
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn an_untrusted_certificate_is_refused() {
    let (port, _cert_pem, _bodies) = tls_acs().await;
    // A CA file holding some other certificate.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, other.cert.pem()).unwrap();
    let config = dm_cwmp_tokio::tls::client_config(&TlsSettings {
        ca_file: Some(ca_file),
        client_certificate: None,
    })
    .unwrap();
    let mut session = HttpSession::new(
        format!("https://127.0.0.1:{port}/acs").parse().unwrap(),
        Credentials::default(),
        Duration::from_secs(10),
        Some(config),
    );
    let body = std::sync::Arc::new(dm_cwmp::soap::Body::from("<x/>".to_owned()));
    let error = session.post(&body).await.unwrap_err().to_string();
    assert!(
        error.contains("TLS") && error.contains("certificate"),
        "{error}"
    );
}

#[test]
fn a_missing_or_empty_ca_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dm_cwmp_tokio::tls::client_config(&TlsSettings {
        ca_file: Some(dir.path().join("none.pem")),
        client_certificate: None,
    })
    .unwrap_err();
    assert!(missing.to_string().contains("none.pem"), "{missing}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = dm_cwmp_tokio::tls::client_config(&TlsSettings {
        ca_file: Some(empty),
        client_certificate: None,
    })
    .unwrap_err();
    assert!(error.to_string().contains("no CA certificate"), "{error}");
}

/// One configuration per set of settings while it is held and its files
/// are unchanged: the CWMP session, transfers and bulk data share one
/// root store; other settings get their own; a CA file replaced is read
/// again, even while the old configuration is held.
#[test]
fn users_of_the_same_settings_share_one_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let settings = |name: &str| {
        let ca_file = dir.path().join(name);
        let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        TlsSettings {
            ca_file: Some(ca_file),
            client_certificate: None,
        }
    };
    let (one, other) = (settings("one.pem"), settings("other.pem"));
    let first = dm_cwmp_tokio::tls::client_config(&one).unwrap();
    let again = dm_cwmp_tokio::tls::client_config(&one).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    let different = dm_cwmp_tokio::tls::client_config(&other).unwrap();
    assert!(!Arc::ptr_eq(&first, &different));
    // Replaced while held: built again from the file, now broken.
    std::fs::write(one.ca_file.as_ref().unwrap(), "not a certificate").unwrap();
    assert!(dm_cwmp_tokio::tls::client_config(&one).is_err());
    drop((first, again));
}

/// A session whose trust is built on demand loads its CA file when it
/// connects (nothing is held before), and a CA file broken by then is
/// the connection's error, naming the file; no trust refuses https://.
#[tokio::test(flavor = "current_thread")]
async fn trust_on_demand_is_loaded_when_the_session_connects() {
    use dm_cwmp_tokio::tls::Trust;
    let (port, cert_pem, mut bodies) = tls_acs().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("acs.pem");
    let url = format!("https://127.0.0.1:{port}/acs");
    let body = std::sync::Arc::new(dm_cwmp::soap::Body::from("<x/>".to_owned()));
    let session = |trust: Trust| {
        HttpSession::new(
            url.parse().unwrap(),
            Credentials::default(),
            Duration::from_secs(10),
            trust,
        )
    };
    let on_demand = Trust::OnDemand(TlsSettings {
        ca_file: Some(ca_file.clone()),
        client_certificate: None,
    });
    // The file does not exist yet: made after the session, read when it
    // connects.
    let mut trusting = session(on_demand.clone());
    std::fs::write(&ca_file, &cert_pem).unwrap();
    trusting.post(&body).await.unwrap();
    assert_eq!(bodies.recv().await.unwrap(), "<x/>");

    std::fs::write(&ca_file, "not a certificate").unwrap();
    let error = session(on_demand)
        .post(&body)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("acs.pem"), "{error}");

    let error = session(Trust::None)
        .post(&body)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("HTTPS is not configured"), "{error}");
}
