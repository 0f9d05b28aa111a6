//! Secrets Manager's versions and staging labels in memory, for unit tests of the
//! steps. Labels behave as on AWS (one version per label; moving `AWSCURRENT` with
//! `RemoveFromVersionId` puts `AWSPREVIOUS` on the old version), and — as moto's
//! server does — a version that becomes `AWSCURRENT` keeps `AWSPENDING` until it is
//! removed, so the rotator is tested to remove it itself.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use switchyard_common::secrets::SecretValue;

use crate::port::{RotationError, SecretDescription, SecretVersions, AWSCURRENT, AWSPENDING, AWSPREVIOUS};

#[derive(Debug, Clone, Default)]
struct Secret {
    rotation_enabled: bool,
    /// Version id → (value, staging labels).
    versions: BTreeMap<String, (Option<String>, Vec<String>)>,
}

#[derive(Debug, Default)]
pub struct MemoryVersions {
    secrets: Mutex<BTreeMap<String, Secret>>,
    /// Calls that changed something (put, move): what "changes nothing" is measured by.
    pub writes: std::sync::atomic::AtomicUsize,
}

fn invalid(call: &'static str, secret: &str, message: &str) -> RotationError {
    RotationError::Aws { call, secret: secret.to_owned(), message: message.to_owned() }
}

impl MemoryVersions {
    /// A secret whose first version (`v1`) holds `value` as `AWSCURRENT`.
    pub fn with_secret(self, name: &str, value: &str, rotation_enabled: bool) -> Self {
        let versions = BTreeMap::from([("v1".to_owned(), (Some(value.to_owned()), vec![AWSCURRENT.to_owned()]))]);
        self.secrets.lock().expect("lock").insert(name.to_owned(), Secret { rotation_enabled, versions });
        self
    }

    /// A version as `RotateSecret` leaves it before `createSecret`: `AWSPENDING`, no value.
    pub fn with_placeholder(self, name: &str, token: &str) -> Self {
        let mut secrets = self.secrets.lock().expect("lock");
        let secret = secrets.get_mut(name).expect("secret exists");
        secret.versions.values_mut().for_each(|(_, stages)| stages.retain(|s| s != AWSPENDING));
        secret.versions.insert(token.to_owned(), (None, vec![AWSPENDING.to_owned()]));
        drop(secrets);
        self
    }

    /// Version id → labels, for comparing before and after.
    pub fn stages(&self, name: &str) -> BTreeMap<String, Vec<String>> {
        let secrets = self.secrets.lock().expect("lock");
        secrets[name].versions.iter().map(|(id, (_, stages))| (id.clone(), stages.clone())).collect()
    }

    pub fn value_of(&self, name: &str, version_id: &str) -> Option<String> {
        self.secrets.lock().expect("lock")[name].versions.get(version_id).and_then(|(v, _)| v.clone())
    }

    fn write(&self) {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl SecretVersions for MemoryVersions {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, RotationError> {
        let secrets = self.secrets.lock().expect("lock");
        let secret = secrets.get(secret_id).ok_or_else(|| RotationError::NotFound(secret_id.to_owned()))?;
        Ok(SecretDescription {
            name: secret_id.to_owned(),
            rotation_enabled: secret.rotation_enabled,
            versions: secret.versions.iter().map(|(id, (_, stages))| (id.clone(), stages.clone())).collect(),
        })
    }

    async fn value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<SecretValue>, RotationError> {
        let secrets = self.secrets.lock().expect("lock");
        let secret = secrets.get(secret_id).ok_or_else(|| RotationError::NotFound(secret_id.to_owned()))?;
        Ok(secret
            .versions
            .get(version_id)
            .filter(|(_, stages)| stages.iter().any(|s| s == stage))
            .and_then(|(value, _)| value.as_deref().map(SecretValue::new)))
    }

    async fn put_pending(&self, secret_id: &str, token: &str, value: &str) -> Result<(), RotationError> {
        let mut secrets = self.secrets.lock().expect("lock");
        let secret = secrets.get_mut(secret_id).ok_or_else(|| RotationError::NotFound(secret_id.to_owned()))?;
        match secret.versions.get_mut(token) {
            // As on AWS: the same request again is accepted and changes nothing.
            Some((Some(existing), _)) if existing == value => return Ok(()),
            Some((Some(_), _)) => return Err(invalid("PutSecretValue", secret_id, "ResourceExistsException")),
            Some((placeholder, _)) => *placeholder = Some(value.to_owned()),
            None => {
                secret.versions.values_mut().for_each(|(_, stages)| stages.retain(|s| s != AWSPENDING));
                secret.versions.insert(token.to_owned(), (Some(value.to_owned()), vec![AWSPENDING.to_owned()]));
            }
        }
        drop(secrets);
        self.write();
        Ok(())
    }

    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), RotationError> {
        const CALL: &str = "UpdateSecretVersionStage";
        let mut secrets = self.secrets.lock().expect("lock");
        let secret = secrets.get_mut(secret_id).ok_or_else(|| RotationError::NotFound(secret_id.to_owned()))?;
        let holder = secret.versions.iter().find(|(_, (_, s))| s.iter().any(|s| s == stage)).map(|(id, _)| id.clone());
        if move_to.is_some_and(|to| !secret.versions.contains_key(to)) {
            return Err(invalid(CALL, secret_id, "not a version of the secret"));
        }
        match (remove_from, &holder) {
            (Some(from), Some(h)) if from == h => {}
            (Some(_), _) => return Err(invalid(CALL, secret_id, "the label is not on RemoveFromVersionId")),
            // A label already on another version must be taken off it explicitly.
            (None, Some(h)) if move_to.is_some_and(|to| to != h) => {
                return Err(invalid(CALL, secret_id, "the label is attached to another version"));
            }
            (None, _) => {}
        }
        if let Some(from) = remove_from {
            secret.versions.get_mut(from).expect("checked").1.retain(|s| s != stage);
        }
        if let Some(to) = move_to {
            let stages = &mut secret.versions.get_mut(to).expect("checked").1;
            if !stages.iter().any(|s| s == stage) {
                stages.push(stage.to_owned());
            }
        }
        if let (AWSCURRENT, Some(from)) = (stage, remove_from) {
            secret.versions.values_mut().for_each(|(_, stages)| stages.retain(|s| s != AWSPREVIOUS));
            secret.versions.get_mut(from).expect("checked").1.push(AWSPREVIOUS.to_owned());
        }
        drop(secrets);
        self.write();
        Ok(())
    }
}
