//! What the template's roles allow, to check the AWS calls the functions make against
//! them: moto does not enforce IAM, so a call a role forgets works locally and is
//! refused in AWS. The template is read with cfn-lint's own YAML loader (the project's
//! virtual environment), so intrinsic functions come through as CloudFormation sees them.

use serde_json::Value;

use crate::{repo, venv};

/// `infra/template.yaml` as JSON.
pub fn template() -> Value {
    let out = std::process::Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys; from cfnlint.decode import cfn_yaml; print(json.dumps(cfn_yaml.load(sys.argv[1]), default=str))",
        ])
        .arg(repo().join("infra/template.yaml"))
        .output()
        .expect("run the venv's python (make test creates it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("template as JSON")
}

/// The IAM action a call needs: the SQS batch operations are authorized as their single
/// form; S3 calls are counted by HTTP method.
pub fn action(service: &str, operation: &str) -> String {
    let op = match (service, operation) {
        ("sqs", batch) if batch.ends_with("Batch") => batch.trim_end_matches("Batch"),
        ("s3", "PUT") => "PutObject",
        ("s3", "GET" | "HEAD") => "GetObject",
        ("s3", "DELETE") => "DeleteObject",
        (_, op) => op,
    };
    format!("{service}:{op}")
}

/// The actions the inline policies of role resource `role` allow (any resource).
pub fn allowed(template: &Value, role: &str) -> Vec<String> {
    let policies = template["Resources"][role]["Properties"]["Policies"].as_array().cloned().unwrap_or_default();
    let mut actions = Vec::new();
    for statement in
        policies.iter().flat_map(|p| p["PolicyDocument"]["Statement"].as_array().cloned().unwrap_or_default())
    {
        if statement["Effect"] != "Allow" {
            continue;
        }
        match &statement["Action"] {
            Value::String(a) => actions.push(a.clone()),
            Value::Array(many) => actions.extend(many.iter().filter_map(Value::as_str).map(str::to_owned)),
            _ => {}
        }
    }
    actions
}

/// Whether `actions` (IAM patterns, `*` at the end) cover `action`.
pub fn covers(actions: &[String], action: &str) -> bool {
    actions.iter().any(|a| match a.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => a == action,
    })
}

/// The role resource of a function, as the template names them (`intake` → `IntakeRole`).
pub fn role_of(function: &str) -> String {
    let mut chars = function.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str() + "Role").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_s3_calls_need_the_actions_iam_authorizes_them_by() {
        assert_eq!(action("sqs", "SendMessageBatch"), "sqs:SendMessage");
        assert_eq!(action("sqs", "DeleteMessageBatch"), "sqs:DeleteMessage");
        assert_eq!(action("s3", "PUT"), "s3:PutObject");
        assert_eq!(action("dynamodb", "GetItem"), "dynamodb:GetItem");
        let allowed = vec!["dynamodb:UpdateItem".to_owned(), "sqs:SendMessage*".to_owned()];
        assert!(covers(&allowed, "sqs:SendMessage"));
        assert!(!covers(&allowed, "dynamodb:GetItem"), "UpdateItem does not allow GetItem");
        assert_eq!(role_of("dispatcher"), "DispatcherRole");
    }
}
