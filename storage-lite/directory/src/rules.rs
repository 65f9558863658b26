//! The failover protocol's decisions, as pure functions of the record and
//! of what a node knows. The nodes act on these, and this crate's model
//! check explores them under every interleaving of crashes and pauses.

use crate::record::SiteRecord;
use grove_core::timestamp::Timestamp;

/// The record of a site's first primary: alone in sync until its backup
/// has caught up and been added.
pub fn first_record(primary: &str, backup: Option<&str>) -> SiteRecord {
    SiteRecord {
        primary: primary.to_owned(),
        backup: backup.map(str::to_owned),
        in_sync: vec![primary.to_owned()],
        adopted: Timestamp::ZERO,
    }
}

/// Whether a write to the site must wait for the backup before it is
/// acknowledged: whenever the backup is in the in-sync set.
pub fn needs_backup(record: &SiteRecord) -> bool {
    record
        .backup
        .as_ref()
        .is_some_and(|backup| record.in_sync.contains(backup))
}

/// Whether the primary may acknowledge a write: at once when the backup
/// is neither in sync nor joining, else once the backup holds it.
pub fn may_acknowledge(record: &SiteRecord, backup_joining: bool, backup_holds: bool) -> bool {
    let waits = needs_backup(record) || backup_joining;
    !waits || backup_holds
}

/// Whether `node` may take the site over now that the primary's lease is
/// gone: only the in-sync backup, which holds every acknowledged write.
pub fn may_promote(record: &SiteRecord, node: &str, primary_alive: bool) -> bool {
    !primary_alive && record.backup.as_deref() == Some(node) && record.in_sync.iter().any(|n| n == node)
}

/// The record after the backup took over holding history up to `adopted`:
/// it is primary, alone in sync, and the former primary is its backup.
pub fn promoted(record: &SiteRecord, adopted: Timestamp) -> SiteRecord {
    let primary = record.backup.clone().unwrap_or_else(|| record.primary.clone());
    SiteRecord {
        in_sync: vec![primary.clone()],
        backup: Some(record.primary.clone()),
        primary,
        adopted,
    }
}

/// The record with the backup out of the in-sync set: the primary may
/// then acknowledge alone, since the backup can no longer be promoted.
pub fn without_backup(record: &SiteRecord) -> SiteRecord {
    SiteRecord {
        in_sync: vec![record.primary.clone()],
        ..record.clone()
    }
}

/// The record with a caught-up backup back in the in-sync set.
pub fn with_backup(record: &SiteRecord) -> SiteRecord {
    let mut in_sync = vec![record.primary.clone()];
    in_sync.extend(record.backup.clone());
    SiteRecord {
        in_sync,
        ..record.clone()
    }
}

/// The record with `backup` named as the site's backup, not in sync: it
/// joins once it holds everything.
pub fn with_backup_candidate(record: &SiteRecord, backup: &str) -> SiteRecord {
    SiteRecord {
        backup: Some(backup.to_owned()),
        in_sync: vec![record.primary.clone()],
        ..record.clone()
    }
}

/// Where a node that was primary must cut its history when it becomes a
/// backup: past what the new primary adopted.
pub fn rejoin_point(record: &SiteRecord) -> Timestamp {
    record.adopted
}

/// The backup for a new site: a live node other than the primary, in
/// another region if there is one, chosen by the site's name so sites
/// spread over the nodes.
pub fn choose_backup<'a>(
    site: &str,
    primary: &str,
    primary_region: &str,
    live: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let mut candidates: Vec<(&str, &str)> = live.into_iter().filter(|(name, _)| *name != primary).collect();
    candidates.sort_by_key(|(name, region)| (*region == primary_region, rendezvous(site, name)));
    candidates.first().map(|(name, _)| (*name).to_owned())
}

/// Rendezvous ordering of `node` for `site` (lower first): where a site
/// without a record goes first, the same on every proxy.
pub fn rendezvous(site: &str, node: &str) -> u64 {
    // FNV-1a over "site\0node": stable across processes and versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in site.bytes().chain([0]).chain(node.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_in_sync_backup_of_a_dead_primary_is_promoted() {
        let record = first_record("a", Some("b"));
        assert!(!needs_backup(&record));
        assert!(!may_promote(&record, "b", false), "a backup not yet in sync");
        let synced = with_backup(&record);
        assert!(needs_backup(&synced));
        assert!(!may_promote(&synced, "b", true), "the primary is alive");
        assert!(may_promote(&synced, "b", false));
        assert!(!may_promote(&synced, "c", false));
        let next = promoted(&synced, Timestamp::from_u64(7));
        assert_eq!(next.primary, "b");
        assert_eq!(next.backup.as_deref(), Some("a"));
        assert_eq!(next.in_sync, ["b"]);
        assert_eq!(rejoin_point(&next), Timestamp::from_u64(7));
        assert!(!needs_backup(&without_backup(&synced)));
        let alone = first_record("a", None);
        let given = with_backup_candidate(&alone, "c");
        assert_eq!(given.backup.as_deref(), Some("c"));
        assert!(!needs_backup(&given), "a new backup joins before it is waited for");
    }

    #[test]
    fn backups_prefer_another_region_and_spread_by_site() {
        let live = [("a", "eu"), ("b", "eu"), ("c", "us")];
        assert_eq!(choose_backup("blog", "a", "eu", live).as_deref(), Some("c"));
        assert_eq!(choose_backup("blog", "a", "eu", [("a", "eu")]), None);
        let backups: std::collections::HashSet<_> = (0..32)
            .filter_map(|i| choose_backup(&format!("site{i}"), "c", "us", live))
            .collect();
        assert_eq!(backups.len(), 2, "sites spread over both other nodes");
    }
}
