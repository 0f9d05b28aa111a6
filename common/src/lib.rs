//! Shared library of switchyard: everything the Lambda functions have in common.
//!
//! Pure logic (config, envelope, signatures, mappings, contracts, backoff) is
//! unit-tested here against in-memory ports; the AWS adapters (`ledger::dynamo`,
//! `queue::sqs`, `secrets::aws`) are exercised over HTTP by the end-to-end suite.

pub mod contract;
pub mod mapping;
pub mod signature;
