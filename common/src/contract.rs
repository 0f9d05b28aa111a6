//! JSON Schema contracts, being written.
