//! gRPC handlers: thin adapters between protobuf and the scheduler/domain.

pub mod admin_service;
pub mod agent_service;
pub mod convert;
pub mod funnel_view;
pub mod job_service;
mod results_page;
mod submit_jobs;
