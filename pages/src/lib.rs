//! Database-backed pages: a site's build may carry `_grove/pages.toml`,
//! whose routes name minijinja templates rendered from the storage node's
//! data. This crate is the part the `grove` CLI and the host share: the
//! route file ([`routes`]), the templates of a tree ([`templates`]), the
//! `data` object templates read through, which records every read
//! ([`data`]), and one render ([`render`]). It does no I/O of its own: the
//! caller supplies template sources and a [`data::DataSource`].

pub mod data;
pub mod render;
pub mod routes;
pub mod site;
pub mod templates;

/// Where a site's route file lives in its tree.
pub const ROUTE_FILE: &str = "_grove/pages.toml";
