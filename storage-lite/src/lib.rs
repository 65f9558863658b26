//! grove's storage core.
//!
//! Everything durable in grove goes through this crate: the [`store`] trait
//! and its backends, content-addressed blobs and tree nodes ([`content`]),
//! site manifests as prolly trees ([`tree`]), site versions with an atomic
//! root pointer ([`site`]), and capability tokens ([`token`]). The layout of
//! objects in the bucket is documented in `DESIGN.md`; every key is built
//! here, so no other crate spells one.

pub mod content;
pub mod deploy;
pub mod hash;
pub mod names;
#[cfg(feature = "node")]
pub mod node;
pub mod publish;
pub mod publish_api;
pub mod record;
pub mod scan;
pub mod site;
pub mod store;
pub mod token;
pub mod tree;

pub use hash::ContentHash;
pub use names::{ContentType, NameError, SiteName, SitePath};
