//! Shared library of switchyard: everything the Lambda functions have in common.
//!
//! Pure logic (config, envelope, signatures, mappings, contracts, backoff, the ledger
//! state machine) is unit-tested here against in-memory ports; the AWS adapters
//! (`ledger::DynamoLedger`, `queue::SqsQueue`, `secrets::AwsSecrets`) are exercised over
//! HTTP against moto's server by the end-to-end suite in `tests/`.

pub mod archive;
pub mod auth;
pub mod backoff;
pub mod batch;
pub mod budget;
pub mod config;
pub mod contract;
pub mod envelope;
pub mod failure;
pub mod fuzz_entry;
pub mod gate;
pub mod json_fields;
pub mod ledger;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod names;
pub mod queue;
pub mod recorded;
pub mod redact;
pub mod runtime;
pub mod secrets;
pub mod signature;
pub mod tls;
