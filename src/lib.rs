//! SecureCart API: a GraphQL API server for an e-commerce platform.

pub mod app;
pub mod auth;
pub mod budget;
pub mod bus;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod payments;
pub mod playground;
pub mod redis_client;
pub mod rest;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
