//! jq mappings (jaq), being written.
