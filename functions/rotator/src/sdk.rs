//! The port over the AWS SDK (tested end to end against moto's server in `tests/`).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::Client;
use switchyard_common::config::Config;
use switchyard_common::names::Stage;
use switchyard_common::runtime::env;
use switchyard_common::secrets::SecretValue;

use crate::port::{RotationError, SecretDescription, SecretVersions, AWSPENDING};
use crate::steps::Rotator;

impl Rotator<AwsSecretVersions> {
    /// Reads `SWITCHYARD_STAGE` and the flow file (`SWITCHYARD_CONFIG` or the bundled
    /// one), which says what each secret is for, so testSecret can check a new value.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let stage = Stage::new(&env("SWITCHYARD_STAGE")?).map_err(|e| e.to_string())?;
        let config = Config::from_env().map_err(|e| format!("flow file: {e}"))?;
        Ok(Rotator::new(AwsSecretVersions::new(Client::new(sdk)), stage, Arc::new(config)))
    }
}

#[derive(Debug, Clone)]
pub struct AwsSecretVersions {
    client: Client,
}

impl AwsSecretVersions {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ResourceNotFoundException")
}

fn failed<E>(call: &'static str, secret_id: &str, e: SdkError<E>) -> RotationError
where
    E: std::error::Error + Send + Sync + 'static,
{
    RotationError::Aws { call, secret: secret_id.to_owned(), message: DisplayErrorContext(e).to_string() }
}

#[async_trait]
impl SecretVersions for AwsSecretVersions {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, RotationError> {
        let out = match self.client.describe_secret().secret_id(secret_id).send().await {
            Ok(out) => out,
            Err(e) if not_found(&e) => return Err(RotationError::NotFound(secret_id.to_owned())),
            Err(e) => return Err(failed("DescribeSecret", secret_id, e)),
        };
        Ok(SecretDescription {
            name: out.name().unwrap_or(secret_id).to_owned(),
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            versions: out
                .version_ids_to_stages()
                .into_iter()
                .flatten()
                .map(|(id, stages)| (id.clone(), stages.clone()))
                .collect(),
        })
    }

    async fn value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<SecretValue>, RotationError> {
        let request =
            self.client.get_secret_value().secret_id(secret_id).version_id(version_id).version_stage(stage).send();
        match request.await {
            Ok(out) => Ok(out.secret_string().map(SecretValue::new)),
            // A version without that label, or RotateSecret's placeholder without a value.
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(failed("GetSecretValue", secret_id, e)),
        }
    }

    async fn put_pending(&self, secret_id: &str, token: &str, value: &str) -> Result<(), RotationError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value)
            .version_stages(AWSPENDING)
            .send()
            .await
            .map(drop)
            .map_err(|e| failed("PutSecretValue", secret_id, e))
    }

    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), RotationError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_move_to_version_id(move_to.map(str::to_owned))
            .set_remove_from_version_id(remove_from.map(str::to_owned))
            .send()
            .await
            .map(drop)
            .map_err(|e| failed("UpdateSecretVersionStage", secret_id, e))
    }
}
