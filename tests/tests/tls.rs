//! The TLS stack every function uses in AWS (rustls on ring, `common::tls`): nothing
//! else in `make test` speaks TLS (moto and the local destinations are plain HTTP), so
//! these tests hold a real TLS 1.3 server (rustls, a test certificate for `localhost`
//! signed by a test CA that no system trusts) against the clients exactly as the
//! functions build them. In TLS 1.3 the server's certificate travels encrypted after
//! the key exchange: a client that rejects it as signed by an unknown issuer has done
//! the key exchange and decrypted the handshake with its provider, i.e. everything but
//! trusting our test CA. A client with no provider would panic or fail before that.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls").join(name)
}

/// What the server saw of one connection: the protocol version it negotiated and how
/// the handshake ended.
#[derive(Debug)]
struct Seen {
    version: Option<rustls::ProtocolVersion>,
    outcome: String,
}

/// A TLS server on 127.0.0.1 for `connections` connections, reporting each.
fn tls_server(connections: usize) -> (u16, mpsc::Receiver<Seen>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("localhost.pem"))
        .expect("test certificate")
        .chain(CertificateDer::pem_file_iter(fixture("ca.pem")).expect("test CA"))
        .collect::<Result<_, _>>()
        .expect("PEM");
    let key = PrivateKeyDer::from_pem_file(fixture("localhost.key")).expect("test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.expect("accept");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut conn = rustls::ServerConnection::new(config.clone()).expect("server connection");
            let outcome = loop {
                match conn.complete_io(&mut stream) {
                    Ok(_) if !conn.is_handshaking() => {
                        // A client that trusted us would now send its request.
                        let mut tls = rustls::Stream::new(&mut conn, &mut stream);
                        let mut line = String::new();
                        let _ = BufReader::new(&mut tls).read_line(&mut line);
                        break format!("handshake completed, then {line:?}");
                    }
                    Ok(_) => continue,
                    Err(e) => break format!("{e}"),
                }
            };
            let _ = tx.send(Seen { version: conn.protocol_version(), outcome });
        }
    });
    (port, rx)
}

fn seen(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(20)).expect("the server saw a connection")
}

fn assert_rejected_our_certificate_after_the_key_exchange(seen: &Seen) {
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3), "{seen:?}");
    // The client's alert: it read our certificate and does not trust its issuer.
    assert!(seen.outcome.contains("UnknownCA") || seen.outcome.contains("BadCertificate"), "{seen:?}");
}

#[tokio::test]
async fn the_dispatchers_destination_client_does_a_tls13_handshake_and_refuses_an_untrusted_certificate() {
    let (port, rx) = tls_server(1);
    let http = switchyard_dispatcher::http_client().expect("the dispatcher's client builds");
    let err = http
        .post(format!("https://localhost:{port}/contacts"))
        .body("{}")
        .send()
        .await
        .expect_err("an untrusted certificate is refused");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("certificate") && chain.contains("UnknownIssuer"), "{chain}");
    assert_rejected_our_certificate_after_the_key_exchange(&seen(&rx));
}

#[tokio::test]
async fn the_sdk_clients_https_connector_does_a_tls13_handshake_and_refuses_an_untrusted_certificate() {
    let (port, rx) = tls_server(1);
    let sdk = switchyard_common::tls::aws_config_loader()
        .endpoint_url(format!("https://localhost:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
        // One attempt: a refused certificate is not worth retrying for this test.
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let err = aws_sdk_sqs::Client::new(&sdk)
        .get_queue_url()
        .queue_name("switchyard-dev-ingest")
        .send()
        .await
        .expect_err("an untrusted certificate is refused");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    assert_rejected_our_certificate_after_the_key_exchange(&seen(&rx));
}
