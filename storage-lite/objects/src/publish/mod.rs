//! Publishing: the host's side of the publish protocol ([`PublishHost`]:
//! offer, probe, upload, commit, rollback), and publishing a directory
//! straight into a store without the network ([`publish_dir`]).

mod host;
mod local;

pub use host::{Committed, Limit, PublishError, PublishHost, PublishLimits};
pub use local::{LocalPublishError, publish_dir};
