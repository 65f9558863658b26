//! grove's formats and pure logic, shared by the host, the storage node and
//! the `grove` CLI: names ([`names`]), content hashes ([`hash`]), the bucket
//! layout ([`keys`]), manifest trees as prolly trees over a node store trait
//! ([`tree`]), the directory scan a publish starts from ([`scan`]), version
//! and token records ([`version`], [`token`]), storage-node timestamps
//! ([`timestamp`]), what a page's head says to search engines
//! ([`page_meta`]), and the messages of the publish protocol ([`publish_api`]),
//! the storage node's API ([`node_api`]) and every API's errors
//! ([`api_error`]).
//!
//! This crate compiles no object-store client, database or server: the CLI
//! depends on it alone.

pub mod api_error;
pub mod hash;
pub mod keys;
pub mod names;
pub mod node_api;
pub mod page_meta;
pub mod publish_api;
pub mod scan;
pub mod timestamp;
pub mod token;
pub mod tree;
pub mod version;

pub use hash::ContentHash;
pub use names::{ContentType, NameError, SiteName, SitePath};
