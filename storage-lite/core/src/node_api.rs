//! The storage node's API messages. These shapes are the contract (extend,
//! don't break); every route is `/v1/sites/<site>/<call>` and takes
//! `Authorization: Bearer <handle>`:
//!
//! - `POST create` [`CreateRequest`] -> `{}`
//! - `POST grant` [`GrantRequest`] -> [`GrantReply`]
//! - `POST revoke` [`RevokeRequest`] -> `{revoked: true}`
//! - `POST write` [`WriteRequest`] -> [`TsReply`]; `after` is a list of
//!   timestamps (or one), each checked: never issued or too far ahead is refused
//! - `GET read?path&after&limit` -> [`ReadReply`], oldest first; with
//!   `order=newest`, newest first from `before` (exclusive; default: the
//!   latest), `next` being the following page's `before`
//! - `GET children?path` -> [`ChildrenReply`]: the names directly under
//!   `path` (none: the site's top level) that hold data
//! - `GET changes?after`: Server-Sent Events, one per committed write of
//!   the site ([`ChangeEvent`]), `id` = its timestamp; needs read on the
//!   whole site
//! - `GET watch?path&after`: Server-Sent Events, one per entry ([`WireEntry`]),
//!   `id` = its timestamp; `Last-Event-ID` resumes; an `error` event
//!   ([`ApiError`](crate::api_error::ApiError)) ends the stream
//! - `POST trim` [`TrimRequest`] -> `{}`
//! - `POST txn` [`TxnRequest`] -> [`TsReply`]: every write under one
//!   timestamp, if `path`'s latest entry is `if_last_ts` (`"0"`: none); a
//!   write without `path` goes to the txn's own path. Paths must be distinct.
//!
//! A data path `p` of site `s` is the token path `sites/s/p`. Timestamps are
//! decimal strings. Errors are [`ApiError`](crate::api_error::ApiError)s.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::timestamp::Timestamp;
use crate::token::Right;

/// Path prefix of every node route.
pub const PREFIX: &str = "/v1/sites/";
/// A node's liveness probe: `GET /health` answers 200.
pub const HEALTH: &str = "/health";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub path: String,
    /// A serialized path takes only writes that name its latest entry as
    /// `after` (compare-and-append).
    #[serde(default)]
    pub serialized: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    pub path: String,
    /// Any JSON value, stored as written.
    pub data: Box<RawValue>,
    /// The timestamps the write must come after, which may come from other
    /// sites' nodes: a list, or one timestamp on its own.
    #[serde(default, skip_serializing_if = "After::is_empty")]
    pub after: After,
}

/// The `after` of a write: `["t1", "t2"]`, `"t"`, or absent (none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct After(pub Vec<Timestamp>);

impl After {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latest of them: a write after it is after all of them.
    pub fn latest(&self) -> Timestamp {
        self.0.iter().copied().max().unwrap_or(Timestamp::ZERO)
    }
}

impl<'de> Deserialize<'de> for After {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a timestamp or a list of timestamps")]
        enum OneOrMany {
            One(Timestamp),
            Many(Vec<Timestamp>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(ts) => Self(vec![ts]),
            OneOrMany::Many(list) => Self(list),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    pub path: String,
    pub if_last_ts: Timestamp,
    pub writes: Vec<TxnWrite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnWrite {
    /// Defaults to the transaction's own path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub data: Box<RawValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrimRequest {
    pub path: String,
    /// Entries before this timestamp are dropped.
    pub before: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// A data path of the site; the grant covers it and everything below.
    pub path: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    pub rights: Vec<Right>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantReply {
    /// The new handle, shown only this once.
    pub handle: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub handle: String,
}

/// The timestamp a write or transaction was committed at.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TsReply {
    pub ts: Timestamp,
}

/// One entry as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireEntry<'a> {
    pub ts: Timestamp,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// One event of a site's change feed: a committed write's timestamp and
/// the paths it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub ts: Timestamp,
    pub paths: Vec<String>,
}

/// The names directly under a path that hold data (`children`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildrenReply {
    pub names: Vec<String>,
}

/// A page of a path's entries, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadReply<'a> {
    #[serde(borrow)]
    pub entries: Vec<WireEntry<'a>>,
    /// Pass as `after` for the next page; `null` when this page reached the end.
    pub next: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_is_a_list_or_one_timestamp() {
        let parse = |json: &str| serde_json::from_str::<WriteRequest>(json).map(|write| write.after);
        let ts = |n: u64| Timestamp::from_u64(n);
        assert_eq!(parse(r#"{"path":"a","data":1}"#).unwrap(), After::default());
        assert_eq!(parse(r#"{"path":"a","data":1,"after":[]}"#).unwrap(), After::default());
        assert_eq!(
            parse(r#"{"path":"a","data":1,"after":"7"}"#).unwrap(),
            After(vec![ts(7)])
        );
        let many = parse(r#"{"path":"a","data":1,"after":["7","9","8"]}"#).unwrap();
        assert_eq!(many.latest(), ts(9));
        for bad in [r#""x""#, "7", r#"["7", 8]"#, r#"{"ts":"7"}"#] {
            assert!(
                parse(&format!(r#"{{"path":"a","data":1,"after":{bad}}}"#)).is_err(),
                "{bad}"
            );
        }
    }
}
