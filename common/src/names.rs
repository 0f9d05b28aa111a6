//! Resource names users rely on (DESIGN.md, "Names and places"). Derived from the stage
//! alone so that nothing is shared between stages.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stage must be 1-16 lowercase letters or digits starting with a letter (dev, staging, prod), got {0:?}")]
pub struct InvalidStage(pub String);

impl Stage {
    pub fn new(stage: &str) -> Result<Self, InvalidStage> {
        let ok = !stage.is_empty()
            && stage.len() <= 16
            && stage.starts_with(|c: char| c.is_ascii_lowercase())
            && stage.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok {
            Ok(Self(stage.to_owned()))
        } else {
            Err(InvalidStage(stage.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn queue(&self, role: &str) -> String {
        format!("switchyard-{}-{role}", self.0)
    }

    pub fn ledger_table(&self) -> String {
        format!("switchyard-{}-ledger", self.0)
    }

    /// `suffix` is `source/{name}` or `destination/{name}` as written in the flow file.
    pub fn secret_id(&self, suffix: &str) -> String {
        format!("switchyard/{}/{suffix}", self.0)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_pattern() {
        let s = Stage::new("dev").unwrap();
        assert_eq!(s.queue("ingest"), "switchyard-dev-ingest");
        assert_eq!(s.queue("dispatch-dlq"), "switchyard-dev-dispatch-dlq");
        assert_eq!(s.ledger_table(), "switchyard-dev-ledger");
        assert_eq!(s.secret_id("source/stripe"), "switchyard/dev/source/stripe");
    }

    #[test]
    fn a_stage_with_separators_or_capitals_is_refused() {
        for bad in ["", "Dev", "de v", "dev/x", "1dev", "a-b"] {
            assert!(Stage::new(bad).is_err(), "{bad}");
        }
    }
}
