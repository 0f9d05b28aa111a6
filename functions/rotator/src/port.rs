//! The few Secrets Manager calls a rotation makes, as a narrow port: the rotator's
//! role grants exactly these (plus nothing else) on `switchyard/{stage}/*`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use switchyard_common::secrets::SecretValue;

pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPENDING: &str = "AWSPENDING";
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// Why a step failed. Names secrets, versions and fields — never a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationError {
    #[error("unknown rotation step {0:?}: expected createSecret, setSecret, testSecret or finishSecret")]
    UnknownStep(String),
    #[error("the rotation event has no {0}")]
    MissingField(&'static str),
    #[error("secret {0} does not exist")]
    NotFound(String),
    #[error("rotation is not enabled for secret {0}")]
    NotEnabled(String),
    #[error("{token} is not a version of secret {secret}")]
    UnknownVersion { secret: String, token: String },
    #[error("version {token} of secret {secret} is not AWSPENDING (another rotation took over?)")]
    NotPending { secret: String, token: String },
    #[error("the AWSPENDING version {token} of secret {secret} has no value")]
    NoPendingValue { secret: String, token: String },
    #[error("secret {0} has no AWSCURRENT version with a value")]
    NoCurrent(String),
    #[error("secret {secret} cannot be rotated here: {reason}")]
    Unsupported { secret: String, reason: &'static str },
    #[error("the new value of secret {secret} is not usable: {reason}")]
    Unusable { secret: String, reason: String },
    #[error("secret {secret} is not one of this stage's (switchyard/{stage}/...)")]
    ForeignSecret { secret: String, stage: String },
    #[error("Secrets Manager {call} failed for {secret}: {message}")]
    Aws { call: &'static str, secret: String, message: String },
}

/// What `DescribeSecret` says about a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDescription {
    pub name: String,
    pub rotation_enabled: bool,
    /// Version id → its staging labels.
    pub versions: BTreeMap<String, Vec<String>>,
}

impl SecretDescription {
    /// The version carrying `stage` (a staging label is on one version at most).
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions.iter().find(|(_, stages)| stages.iter().any(|s| s == stage)).map(|(id, _)| id.as_str())
    }

    pub fn has(&self, version_id: &str, stage: &str) -> bool {
        self.versions.get(version_id).is_some_and(|stages| stages.iter().any(|s| s == stage))
    }
}

#[async_trait]
pub trait SecretVersions: Send + Sync {
    /// `DescribeSecret`.
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, RotationError>;

    /// `GetSecretValue` of `version_id` asked together with `stage`; `None` when that
    /// version does not carry the stage or has no value yet.
    async fn value(&self, secret_id: &str, version_id: &str, stage: &str)
        -> Result<Option<SecretValue>, RotationError>;

    /// `PutSecretValue` of `value` as version `token`, labelled `AWSPENDING` only.
    async fn put_pending(&self, secret_id: &str, token: &str, value: &str) -> Result<(), RotationError>;

    /// `UpdateSecretVersionStage`: `stage` onto `move_to`, off `remove_from`.
    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), RotationError>;
}
