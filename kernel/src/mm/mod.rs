//! Memory management logic: translation tables and user-memory claims.

pub mod pagetable;
pub mod user;
