//! `testSecret`: is a value usable for what the flow file uses the secret for?

use switchyard_common::auth::credentials::{self, SecretFields};
use switchyard_common::auth::oauth2::ClientCredentials;
use switchyard_common::auth::signing;
use switchyard_common::config::{Auth, Config};
use switchyard_common::names::Stage;
use switchyard_common::signature::{Scheme, SigningSecret};

use crate::port::RotationError;

/// Checks `value` as the secret `name` (`switchyard/{stage}/…`) is used: with each
/// source's signature scheme, each destination's auth kind and outbound signing
/// that names it. A secret the flow file does not name must still be a non-empty
/// string, a JSON object if it looks like JSON, a usable key if it is `whsec_`.
pub fn usable(config: &Config, stage: &Stage, name: &str, value: &str) -> Result<(), RotationError> {
    let unusable = |reason: String| RotationError::Unusable { secret: name.to_owned(), reason };
    let prefix = stage.secret_id("");
    let suffix = name
        .strip_prefix(&prefix)
        .ok_or_else(|| RotationError::ForeignSecret { secret: name.to_owned(), stage: stage.to_string() })?;
    if value.trim().is_empty() {
        return Err(unusable("it is empty".to_owned()));
    }

    let mut named = false;
    for source in config.sources.values().filter(|s| s.secret == suffix) {
        named = true;
        source.scheme.check_secret(&SigningSecret::new(value)).map_err(|e| unusable(e.to_string()))?;
    }
    for destination in config.destinations.values() {
        if destination.auth.secret() == Some(suffix) {
            named = true;
            auth_usable(&destination.auth, name, value).map_err(|e| unusable(e.to_string()))?;
        }
        if let Some(config) = destination.signing.as_ref().filter(|s| s.secret == suffix) {
            named = true;
            let secret = signing::signing_secret(name, value).map_err(|e| unusable(e.to_string()))?;
            config.scheme.scheme().check_secret(&secret).map_err(|e| unusable(e.to_string()))?;
        }
    }
    if named {
        return Ok(());
    }
    let trimmed = value.trim();
    if trimmed.starts_with(['{', '[']) {
        SecretFields::parse(name, trimmed).map_err(|e| unusable(e.to_string()))?;
    } else if trimmed.starts_with("whsec_") {
        Scheme::StandardWebhooks.check_secret(&SigningSecret::new(trimmed)).map_err(|e| unusable(e.to_string()))?;
    }
    Ok(())
}

fn auth_usable(auth: &Auth, name: &str, value: &str) -> Result<(), credentials::CredentialError> {
    let fields = SecretFields::parse(name, value)?;
    match auth {
        Auth::None => Ok(()),
        Auth::ApiKey { header, .. } => credentials::api_key_header(&fields, header).map(drop),
        Auth::Bearer { .. } => credentials::bearer_header(&fields).map(drop),
        Auth::Basic { .. } => credentials::basic_header(&fields).map(drop),
        Auth::OAuth2ClientCredentials { .. } => ClientCredentials::from_secret(&fields).map(drop),
        Auth::WebhookUrl { .. } => fields.get("url").map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::bundled().expect("bundled flow file")
    }

    fn check(suffix: &str, value: &str) -> Result<(), RotationError> {
        let stage = Stage::new("dev").unwrap();
        usable(&config(), &stage, &stage.secret_id(suffix), value)
    }

    #[test]
    fn a_source_secret_is_checked_with_its_signature_scheme() {
        assert!(check("source/standard", "whsec_c3VwZXItc2VjcmV0LWtleS1tYXRlcmlhbA==").is_ok());
        let err = check("source/standard", "whsec_not base64!").unwrap_err();
        assert!(matches!(err, RotationError::Unusable { .. }), "{err}");
        assert!(check("source/github", "any-shared-secret").is_ok());
    }

    #[test]
    fn a_destination_secret_is_checked_with_its_auth_kind() {
        assert!(check("destination/crm", r#"{"api_key":"k3y"}"#).is_ok());
        for bad in [r#"{"token":"t"}"#, r#"{"api_key":""}"#, "k3y", r#"{"api_key":"line\nbreak"}"#] {
            assert!(check("destination/crm", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_secret_but_never_quote_the_value() {
        let err = check("destination/crm", r#"{"api_key":"sekr3t-value\n"}"#).unwrap_err().to_string();
        assert!(err.contains("switchyard/dev/destination/crm") && !err.contains("sekr3t"), "{err}");
    }

    #[test]
    fn a_secret_of_another_stage_or_an_empty_value_is_refused() {
        let stage = Stage::new("dev").unwrap();
        let err = usable(&config(), &stage, "switchyard/prod/destination/crm", r#"{"api_key":"k"}"#).unwrap_err();
        assert!(matches!(err, RotationError::ForeignSecret { .. }), "{err}");
        assert!(check("source/stripe", " ").is_err());
    }

    #[test]
    fn a_secret_the_flow_file_does_not_name_is_checked_by_its_shape() {
        assert!(check("destination/other", r#"{"api_key":"k"}"#).is_ok());
        assert!(check("destination/other", "{broken").is_err());
        assert!(check("destination/other-signing", "whsec_???").is_err());
        assert!(check("source/other", "plain").is_ok());
    }
}
