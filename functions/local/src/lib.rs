//! The local runner: the same handlers as in AWS, with this process playing API
//! Gateway (HTTP → API Gateway v2 event) and the SQS event source mappings (receive,
//! invoke, delete what succeeded). Also a recording destination (the sink).

pub mod cli;
pub mod destinations;
pub mod intake_http;
pub mod orders_api;
pub mod pipeline;
pub mod poller;
pub mod send;
pub mod sink;
pub mod stack;
