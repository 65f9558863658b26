//! grove's durable state in an object store.
//!
//! The [`store`] trait and its backends (a local directory, S3/R2, memory),
//! content-addressed blobs and tree nodes ([`content`]), site versions with an
//! atomic root pointer ([`site`]), the journal of root changes that edges follow ([`journal`]), the pages a sitemap lists ([`pages`]), capability tokens ([`token`]), and the
//! host's side of publishing ([`publish`]). Every key comes from
//! `grove_core::keys`.

pub mod api_failure;
pub mod content;
pub mod journal;
pub mod pages;
pub mod publish;
pub mod record;
pub mod site;
pub mod store;
pub mod token;
