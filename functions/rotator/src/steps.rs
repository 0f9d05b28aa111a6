//! The four steps, validated and idempotent.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_common::config::Config;
use switchyard_common::names::Stage;
use switchyard_common::redact;
use tracing::info;

use crate::check::usable;
use crate::generate::next_value;
use crate::port::{RotationError, SecretDescription, SecretVersions, AWSCURRENT, AWSPENDING};

/// What Secrets Manager sends the rotation function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    /// The secret's ARN (or name).
    #[serde(rename = "SecretId", default)]
    pub secret_id: String,
    /// The id of the version being created: the same in all four steps.
    #[serde(rename = "ClientRequestToken", default)]
    pub client_request_token: String,
    #[serde(rename = "Step", default)]
    pub step: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Set,
    Test,
    Finish,
}

impl Step {
    pub fn parse(step: &str) -> Result<Self, RotationError> {
        match step {
            "createSecret" => Ok(Step::Create),
            "setSecret" => Ok(Step::Set),
            "testSecret" => Ok(Step::Test),
            "finishSecret" => Ok(Step::Finish),
            other => Err(RotationError::UnknownStep(other.chars().take(40).collect())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "createSecret",
            Step::Set => "setSecret",
            Step::Test => "testSecret",
            Step::Finish => "finishSecret",
        }
    }
}

/// What a step did; a step run again reports that its work was already done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// createSecret put a new value as AWSPENDING.
    Created,
    /// createSecret found the pending value already there.
    AlreadyCreated,
    /// setSecret: nothing outside Secrets Manager holds a copy.
    NothingToSet,
    /// testSecret: the pending value is usable.
    Tested,
    /// finishSecret moved AWSCURRENT to the new version and took AWSPENDING off it.
    Finished,
    /// The token's version is already AWSCURRENT (and not AWSPENDING): rotation over.
    AlreadyCurrent,
}

pub struct Rotator<V> {
    versions: V,
    stage: Stage,
    config: Arc<Config>,
}

impl<V: SecretVersions> Rotator<V> {
    pub fn new(versions: V, stage: Stage, config: Arc<Config>) -> Self {
        Self { versions, stage, config }
    }

    pub fn versions(&self) -> &V {
        &self.versions
    }

    /// Runs the event's step. Errors say what is wrong with the event or the secret;
    /// returning one makes Secrets Manager retry, then mark the rotation failed.
    pub async fn handle(&self, event: &RotationEvent) -> Result<Done, RotationError> {
        let step = Step::parse(&event.step)?;
        let (id, token) = (event.secret_id.as_str(), event.client_request_token.as_str());
        if id.is_empty() {
            return Err(RotationError::MissingField("SecretId"));
        }
        if token.is_empty() {
            return Err(RotationError::MissingField("ClientRequestToken"));
        }
        let secret = self.versions.describe(id).await?;
        if !secret.rotation_enabled {
            return Err(RotationError::NotEnabled(secret.name));
        }
        let unknown = || RotationError::UnknownVersion { secret: secret.name.clone(), token: token.to_owned() };
        match secret.versions.get(token) {
            // createSecret makes the version when RotateSecret has not (a direct call).
            None if step == Step::Create => {}
            None => return Err(unknown()),
            Some(_) if secret.has(token, AWSCURRENT) => return self.already_current(step, id, &secret, token).await,
            Some(_) if !secret.has(token, AWSPENDING) => {
                return Err(RotationError::NotPending { secret: secret.name.clone(), token: token.to_owned() });
            }
            Some(_) => {}
        }
        let done = match step {
            Step::Create => self.create(id, &secret, token).await?,
            Step::Set => {
                info!(secret_id = %secret.name, "setSecret: nothing outside Secrets Manager to set");
                Done::NothingToSet
            }
            Step::Test => self.test(id, &secret, token).await?,
            Step::Finish => self.finish(id, &secret, token).await?,
        };
        info!(secret_id = %secret.name, version = token, step = step.as_str(), outcome = ?done, "rotation step done");
        Ok(done)
    }

    /// The token's version is current: an earlier finishSecret got at least that far.
    /// Only the AWSPENDING label may be left to take off.
    async fn already_current(
        &self,
        step: Step,
        id: &str,
        secret: &SecretDescription,
        token: &str,
    ) -> Result<Done, RotationError> {
        if step == Step::Finish && secret.has(token, AWSPENDING) {
            self.versions.move_stage(id, AWSPENDING, None, Some(token)).await?;
            info!(secret_id = %secret.name, version = token, "finishSecret: AWSPENDING taken off the current version");
            return Ok(Done::Finished);
        }
        info!(secret_id = %secret.name, version = token, step = step.as_str(), "version already current; nothing to do");
        Ok(Done::AlreadyCurrent)
    }

    async fn current_value(&self, id: &str, secret: &SecretDescription) -> Result<String, RotationError> {
        let no_current = || RotationError::NoCurrent(secret.name.clone());
        let version = secret.version_with(AWSCURRENT).ok_or_else(no_current)?;
        let value = self.versions.value(id, version, AWSCURRENT).await?.ok_or_else(no_current)?;
        redact::register_secret(value.expose());
        Ok(value.expose().to_owned())
    }

    async fn create(&self, id: &str, secret: &SecretDescription, token: &str) -> Result<Done, RotationError> {
        if secret.has(token, AWSPENDING) && self.versions.value(id, token, AWSPENDING).await?.is_some() {
            return Ok(Done::AlreadyCreated);
        }
        let current = self.current_value(id, secret).await?;
        let next = next_value(&current)
            .map_err(|reason| RotationError::Unsupported { secret: secret.name.clone(), reason })?;
        // From here on, no log line can carry the new value either.
        redact::register_secret(&next);
        // Checked before it is stored: a value testSecret would refuse is never pending.
        usable(&self.config, &self.stage, &secret.name, &next)?;
        self.versions.put_pending(id, token, &next).await?;
        Ok(Done::Created)
    }

    async fn test(&self, id: &str, secret: &SecretDescription, token: &str) -> Result<Done, RotationError> {
        let pending = self
            .versions
            .value(id, token, AWSPENDING)
            .await?
            .ok_or_else(|| RotationError::NoPendingValue { secret: secret.name.clone(), token: token.to_owned() })?;
        redact::register_secret(pending.expose());
        usable(&self.config, &self.stage, &secret.name, pending.expose())?;
        Ok(Done::Tested)
    }

    async fn finish(&self, id: &str, secret: &SecretDescription, token: &str) -> Result<Done, RotationError> {
        let current =
            secret.version_with(AWSCURRENT).ok_or_else(|| RotationError::NoCurrent(secret.name.clone()))?.to_owned();
        self.versions.move_stage(id, AWSCURRENT, Some(token), Some(&current)).await?;
        // AWS takes AWSPENDING off when the rotation ends; some endpoints leave it on
        // the new version. Read the labels again rather than assume either.
        if self.versions.describe(id).await?.has(token, AWSPENDING) {
            self.versions.move_stage(id, AWSPENDING, None, Some(token)).await?;
        }
        Ok(Done::Finished)
    }
}

#[cfg(test)]
mod tests;
