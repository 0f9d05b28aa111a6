//! One TLS stack for every outbound connection: rustls with the `ring` provider.
//!
//! The SDK's default https client and reqwest's `rustls` feature each bring aws-lc-rs,
//! which is most of what kept the mapper's and dispatcher's `bootstrap.zip` above 4 MB
//! (README, "Cost of an event"). Both are built here instead, on ring: the SDK through
//! [`aws_config_loader`], every reqwest client through [`http_client_builder`], which
//! installs ring as the process's rustls provider first (reqwest is built with
//! `rustls-no-provider` and refuses to build a client without one). Trust roots are
//! the system's in both cases.

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// Makes ring the process's rustls provider; every later call is a no-op.
pub fn install_default_provider() {
    // Err means a provider is already installed: the first one stays, as intended.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The one way to start a `reqwest::Client` here: ring installed, then the builder.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_default_provider();
    reqwest::Client::builder()
}

/// The SDK config loader with the environment's settings (`AWS_ENDPOINT_URL`, region,
/// credentials) and the https client on ring. Without it the SDK has no HTTP client
/// at all: its default one is not compiled in.
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(sdk_https_client())
}

/// The SDK's https client on ring, with the system's trust roots.
pub fn sdk_https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_install_the_process_provider_is_ring_and_a_second_install_keeps_it() {
        install_default_provider();
        install_default_provider();
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a provider is installed");
        let ring = rustls::crypto::ring::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>();
        assert_eq!(suites(installed), suites(&ring));
        assert!(!installed.kx_groups.is_empty());
    }

    #[tokio::test]
    async fn the_sdk_config_carries_an_http_client_since_the_sdk_has_no_default_one() {
        let sdk = aws_config_loader()
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("k", "s", None, None, "test"))
            .load()
            .await;
        assert!(sdk.http_client().is_some());
        // and the default loader, as the functions used before, has none to offer
        let bare = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("k", "s", None, None, "test"))
            .load()
            .await;
        assert!(bare.http_client().is_none());
    }
}
