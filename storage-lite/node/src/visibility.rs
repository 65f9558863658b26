//! How far each site's history can be read. A site's primary limits it to
//! what its in-sync backup has made durable too, so nothing a failover
//! could lose is ever seen; every other site shows all that is committed.

use std::collections::HashMap;
use std::sync::RwLock;

use grove_core::timestamp::Timestamp;

/// Per-site read bounds; a site without one shows everything.
#[derive(Debug, Default)]
pub struct Visibility {
    bounds: RwLock<HashMap<String, u64>>,
}

impl Visibility {
    /// The latest timestamp of `site` readers may see.
    pub fn bound(&self, site: &str) -> u64 {
        self.bounds
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(site)
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// Sets `site`'s bound to `ts`; true if that shows more than before.
    pub(crate) fn limit(&self, site: &str, ts: Timestamp) -> bool {
        let mut bounds = self.bounds.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = bounds.insert(site.to_owned(), ts.as_u64()).unwrap_or(u64::MAX);
        ts.as_u64() > before
    }

    /// Raises `site`'s bound to `ts` if it has a lower one; true if that
    /// shows more. A site without a bound shows everything already.
    pub(crate) fn raise(&self, site: &str, ts: Timestamp) -> bool {
        let mut bounds = self.bounds.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match bounds.get_mut(site) {
            Some(bound) if *bound < ts.as_u64() => {
                *bound = ts.as_u64();
                true
            }
            _ => false,
        }
    }

    /// Removes `site`'s bound; true if it had one.
    pub(crate) fn lift(&self, site: &str) -> bool {
        self.bounds
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(site)
            .is_some()
    }
}
