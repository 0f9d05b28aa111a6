//! JSON Schema contracts: what a destination accepts, checked before anything is sent.
//!
//! Violation messages are built from the instance path and the failed keyword only,
//! never from jsonschema's own messages: those quote the offending instance value
//! (`"alice@example" is not a "email"`), and a reason travels into the ledger, DLQ
//! message attributes and logs, where personal data must not go. Schema-side values
//! (limits, patterns, enum options, property names) are configuration and may appear.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use std::fmt;
use std::sync::OnceLock;

/// A contract schema, compiled on first use ([`Contract::check`], which the mapper's
/// cold start calls for every flow). `Send + Sync`. Loading a flow file only parses the
/// schema, so the functions that never validate (intake, dispatcher, poller,
/// reconciler) do not link the JSON Schema compiler: about a fifth of their binary.
pub struct Contract {
    name: String,
    schema: Value,
    validator: OnceLock<Validator>,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract").field("name", &self.name).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("contract {name} has an invalid schema: {message}")]
    InvalidSchema { name: String, message: String },
    /// Each error reads "at /path: message" and carries no instance value.
    #[error("{}", violation_reason(name, errors))]
    Violation { name: String, errors: Vec<String> },
}

impl ContractError {
    /// A short, stable, human-readable reason, used as the DLQ reason.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

fn violation_reason(name: &str, errors: &[String]) -> String {
    let first = errors.first().map_or("no details", String::as_str);
    match errors.len() {
        0 | 1 => format!("contract {name} violated: {first}"),
        n => format!("contract {name} violated: {first} (and {} more)", n - 1),
    }
}

impl Contract {
    /// Compile `schema` (draft taken from `$schema`, 2020-12 when absent).
    ///
    /// `format` is asserted, not just annotated (the 2020-12 default): a contract
    /// saying `"format": "email"` means the destination rejects anything else. An
    /// unknown format is a schema error rather than silently passing everything.
    pub fn compile(name: &str, schema: &Value) -> Result<Self, ContractError> {
        let contract = Self::new(name, schema.clone());
        contract.check()?;
        Ok(contract)
    }

    /// A contract whose schema is compiled by the first [`Contract::check`] or
    /// [`Contract::validate`].
    pub fn new(name: &str, schema: Value) -> Self {
        Self { name: name.to_owned(), schema, validator: OnceLock::new() }
    }

    /// Compiles the schema once; an invalid schema is an error each time it is asked.
    pub fn check(&self) -> Result<&Validator, ContractError> {
        if let Some(validator) = self.validator.get() {
            return Ok(validator);
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .build(&self.schema)
            .map_err(|err| ContractError::InvalidSchema {
                name: self.name.clone(),
                // Schema errors describe the schema (configuration), not an event.
                message: format!("at {}: {err}", pointer(err.instance_path().as_str())),
            })?;
        Ok(self.validator.get_or_init(|| validator))
    }

    pub fn validate(&self, instance: &Value) -> Result<(), ContractError> {
        let errors: Vec<String> = self.check()?.iter_errors(instance).map(|err| describe(&err)).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ContractError::Violation { name: self.name.clone(), errors })
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn pointer(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

fn describe(err: &ValidationError<'_>) -> String {
    format!("at {}: {}", pointer(err.instance_path().as_str()), kind_message(err.kind()))
}

/// What failed, from the schema's side only (see the module docs for why).
fn kind_message(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::AdditionalItems { limit } => format!("has more than {limit} items"),
        // Property names are structure, like the path itself; their values are not shown.
        K::AdditionalProperties { unexpected } => {
            format!("has unexpected properties {}", names(unexpected))
        }
        K::AnyOf { .. } => "does not match any schema in anyOf".to_owned(),
        K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {
            "could not be checked against its pattern".to_owned()
        }
        K::Constant { expected_value } => format!("is not the constant {expected_value}"),
        K::Contains => "has no item matching contains".to_owned(),
        K::ContentEncoding { content_encoding } => {
            format!("is not valid {content_encoding} content")
        }
        K::ContentMediaType { content_media_type } => {
            format!("is not valid {content_media_type} content")
        }
        K::Custom { keyword, .. } => format!("fails keyword {keyword}"),
        K::Enum { options } => format!("is not one of {options}"),
        K::ExclusiveMaximum { limit } => format!("is not less than {limit}"),
        K::ExclusiveMinimum { limit } => format!("is not greater than {limit}"),
        K::FalseSchema => "is not allowed here".to_owned(),
        K::Format { format } => format!("does not match format \"{format}\""),
        K::FromUtf8 { .. } => "decodes to invalid UTF-8".to_owned(),
        K::MaxItems { limit } => format!("has more than {limit} items"),
        K::Maximum { limit } => format!("is greater than {limit}"),
        K::MaxLength { limit } => format!("is longer than {limit} characters"),
        K::MaxProperties { limit } => format!("has more than {limit} properties"),
        K::MinItems { limit } => format!("has fewer than {limit} items"),
        K::Minimum { limit } => format!("is less than {limit}"),
        K::MinLength { limit } => format!("is shorter than {limit} characters"),
        K::MinProperties { limit } => format!("has fewer than {limit} properties"),
        K::MultipleOf { multiple_of } => format!("is not a multiple of {multiple_of}"),
        K::Not { .. } => "matches a schema it must not match (not)".to_owned(),
        K::OneOfMultipleValid { .. } => "matches more than one schema in oneOf".to_owned(),
        K::OneOfNotValid { .. } => "does not match any schema in oneOf".to_owned(),
        K::Pattern { pattern } => format!("does not match pattern \"{pattern}\""),
        K::PropertyNames { error } => {
            format!("has a property name that {}", kind_message(error.kind()))
        }
        K::Required { property } => format!("is missing required property {property}"),
        K::Type { kind } => match kind {
            TypeKind::Single(t) => format!("is not of type {t}"),
            TypeKind::Multiple(set) => {
                let types: Vec<&str> = set.iter().map(|t| t.as_str()).collect();
                format!("is not of type {}", types.join(" or "))
            }
        },
        // `unexpected` here may render the items themselves: count only.
        K::UnevaluatedItems { unexpected } => {
            format!("has {} unevaluated items", unexpected.len())
        }
        K::UnevaluatedProperties { unexpected } => {
            format!("has unevaluated properties {}", names(unexpected))
        }
        K::UniqueItems => "has non-unique items".to_owned(),
        K::Referencing(err) => format!("has a $ref that cannot be resolved: {err}"),
    }
}

fn names(properties: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut listed: Vec<String> =
        properties.iter().take(SHOWN).map(|p| format!("\"{}\"", p.chars().take(64).collect::<String>())).collect();
    if properties.len() > SHOWN {
        listed.push(format!("and {} more", properties.len() - SHOWN));
    }
    listed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crm_contact() -> Contract {
        let schema: Value =
            serde_json::from_str(include_str!("../../config/contracts/crm_contact.schema.json")).unwrap();
        Contract::compile("crm_contact", &schema).unwrap()
    }

    fn valid_contact() -> Value {
        json!({
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "source": "stripe_payment",
            "total_spent_minor": 4999,
            "currency": "EUR",
            "status": "customer"
        })
    }

    fn violations(instance: &Value) -> Vec<String> {
        match crm_contact().validate(instance) {
            Err(ContractError::Violation { errors, .. }) => errors,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn contract_accepts_a_valid_instance() {
        crm_contact().validate(&valid_contact()).unwrap();
        let mut nameless = valid_contact();
        nameless["name"] = Value::Null;
        crm_contact().validate(&nameless).unwrap();
    }

    #[test]
    fn contract_rejects_a_missing_required_field() {
        let mut contact = valid_contact();
        contact.as_object_mut().unwrap().remove("email");
        assert_eq!(violations(&contact), ["at (root): is missing required property \"email\""]);
    }

    #[test]
    fn contract_rejects_a_wrong_type() {
        let mut contact = valid_contact();
        contact["total_spent_minor"] = json!("4999");
        assert_eq!(violations(&contact), ["at /total_spent_minor: is not of type integer"]);
    }

    #[test]
    fn contract_rejects_an_additional_property() {
        let mut contact = valid_contact();
        contact["phone"] = json!("+49 30 1234567");
        let errors = violations(&contact);
        assert_eq!(errors, ["at (root): has unexpected properties \"phone\""]);
        assert!(!errors[0].contains("+49"));
    }

    #[test]
    fn contract_asserts_formats() {
        let mut contact = valid_contact();
        contact["email"] = json!("jenny.rosen.at.example.com");
        assert_eq!(violations(&contact), ["at /email: does not match format \"email\""]);
    }

    #[test]
    fn violation_message_contains_no_instance_value() {
        let secret = "jenny.rosen@@example.com";
        let contact = json!({
            "email": secret,
            "name": ["Jenny", "Rosen"],
            "source": "",
            "total_spent_minor": -4999,
            "currency": "eur",
            "status": "vip",
        });
        let err = crm_contact().validate(&contact).unwrap_err();
        let everything = format!("{} {err:?}", err.reason());
        for value in [secret, "Jenny", "-4999", "eur", "vip"] {
            assert!(!everything.contains(value), "{value} leaked: {everything}");
        }
        let ContractError::Violation { errors, .. } = &err else { unreachable!() };
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert_eq!(
            err.reason(),
            "contract crm_contact violated: at /currency: does not match pattern \"^[A-Z]{3}$\" (and 5 more)"
        );
    }

    #[test]
    fn non_object_instance_is_a_violation() {
        assert_eq!(violations(&json!(42)), ["at (root): is not of type object"]);
    }

    #[test]
    fn invalid_schema_is_refused_at_compile() {
        for schema in [
            json!({"type": "strnig"}),
            json!({"format": "emial"}),
            json!({"pattern": "("}),
            json!({"$ref": "https://example.com/elsewhere.json"}),
        ] {
            let err = Contract::compile("broken", &schema).unwrap_err();
            assert!(matches!(&err, ContractError::InvalidSchema { name, .. } if name == "broken"), "{err:?}");
            assert!(err.reason().starts_with("contract broken has an invalid schema: "));
        }
    }

    #[test]
    fn contract_is_send_and_sync_and_debug_shows_only_the_name() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Contract>();
        assert_eq!(format!("{:?}", crm_contact()), r#"Contract { name: "crm_contact" }"#);
    }
}
