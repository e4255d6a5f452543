//! `septa-service`: the self-hosted security service for a fleet of Septa devices.
//!
//! Layers, each using only those below it:
//! - `septa_abi::service` — the device protocol's wire types, shared with the device agent;
//! - [`policy`] — decisions as plain functions: release matching, bundle checks, rollout
//!   phases and halts, per-device status from evidence, issue grouping, names and roles;
//! - [`storage`] — every SQL statement, on SQLite or PostgreSQL, one schema;
//! - [`ca`] — the certificate authority for device certificates and the device port;
//! - [`web`] — axum handlers for the device protocol, the management API and the dashboard;
//! - [`server`] — listeners (plain HTTP, and rustls on the device port) and the sweeper.
//!
//! [`sim`] is a simulated device that speaks the real protocol with real keys, for tests and
//! the load generator.

#![forbid(unsafe_code)]

pub mod ca;
pub mod policy;
pub mod server;
pub mod sim;
pub mod storage;
pub mod web;

/// A new API token: 32 random bytes, URL-safe text.
pub fn new_token() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("septa_{}", hex::encode(bytes))
}
