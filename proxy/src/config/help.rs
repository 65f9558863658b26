//! `grove-proxy --help`'s list of config keys, checked against the real
//! defaults by a test, so the two cannot drift.

/// Every key of the config file with its default, as `--help` shows it.
pub const CONFIG_HELP: &str = "\
Configuration file keys (TOML; every key optional):
  listen = \"127.0.0.1:8080\"          public HTTP listener (HTTP/1.1 and h2c)
  admin_listen = \"127.0.0.1:9180\"    Prometheus /metrics and /health; \"\" disables
  base_domain = \"localhost\"          sites are <site>.<base_domain>; previews <n>--<site>.<base_domain>
  state_dir = \".grove\"               local store, disk cache, pid file, upgrade socket
  root_refresh_ms = 60000            safety net: a site's known root older than this is read again when asked for
  role = \"full\"                      \"static\": serve the published snapshot only, no storage node; the rest goes to live.url
  service_worker = true              HTML gets the worker's register script; false also unregisters installed workers
  public_url = \"https://{host}/\"    live and preview URLs in publish replies; default http://{host}:<listen port>/
  [store]  kind = \"local\"  path = \"<state_dir>/store\"
           kind = \"s3\"     endpoint = \"https://<account>.r2.cloudflarestorage.com\"  bucket = \"...\"  region = \"auto\"
           (S3 keys only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS config files)
  [cache]  memory_bytes = 268435456  disk_bytes = 4294967296  max_memory_object_bytes = 8388608
           tree_node_entries = 4000000  tree_node_bytes = 67108864  rule_sets = 10000
           compressed_bytes = <memory_bytes / 4>  prepared_bytes = <memory_bytes / 4>
  [http]   keepalive_secs = 60  read_timeout_secs = 30  write_timeout_secs = 30
           max_request_body_bytes = 1048576  max_path_bytes = 2048  max_header_bytes = 65536
           write_buffer_bytes = 32768  first_request_timeout_secs = 60
           max_connections_per_client = 512  max_connections = 16384
           sendfile = true  sendfile_min_bytes = 65536   plaintext HTTP/1 sends cached files from the page cache
  [tls]    listen = \"0.0.0.0:8443\"  reload_secs = 30     HTTPS with HTTP/2 (ALPN); certificates chosen by SNI
  [[tls.certificates]]  domains = [\"example.com\", \"*.example.com\"]  cert = \"fullchain.pem\"  key = \"key.pem\"
  [sites.<name>]  domains = [\"www.example.com\"]  trailing_slash = \"auto\"|\"always\"|\"never\"  spa = false
                  service_worker = true|false   (default: the top-level key)
                  canonical_host = \"<first domain, else <site>.<base_domain>>\"   the host search engines index
                  canonical = \"redirect\"|\"header\"   other hosts: 308 there, or serve with Link rel=canonical
  [sites.<name>.auth]  issuer = \"https://accounts.example.com\"  client_id = \"...\"  client_secret_env = \"BLOG_OIDC_SECRET\"
           sign-in with OpenID Connect at /_grove/auth/login; the secret only from that variable (none: a public client)
           allow = [\"*\"]  (email or subject patterns)  protect = []  (URL paths, e.g. \"/members/*\")
           read = [\"users/{subject}/*\"]  write = [\"users/{subject}/*\"]  (node paths a session may use)
           scopes = [\"email\", \"profile\"]  idle_timeout_secs = 86400  absolute_timeout_secs = 1209600
  [live]   url = \"https://{site}.live.example.com/\"  api = \"proxy\"|\"redirect\"   role = \"static\" only: where sign-in,
           /_grove/api/* and /_grove/live go ({host}, {site} filled in); signed-in page loads are redirected there
  [edges]  secret_env = \"GROVE_EDGE_SECRET\"  journal_poll_ms = 1000  safety_net_reads_per_sec = 1
           peers = [\"edge.internal:8080\"]   edges told of each publish at once (the secret, 16+ characters, signs the push);
           every edge also reads the bucket's journal/<seq> each journal_poll_ms
  [egress] redirect_blobs_above_bytes = 0  redirect_ttl_secs = 3600  public_base_url = \"https://pub-<id>.r2.dev/\"
           files above that size get a 302 to the object store (presigned, or the public bucket URL); 0: never
  [publish]  max_file_bytes = 104857600  max_files_per_site = 100000
  [cdn.cloudflare]  zone_id = \"...\"  api_token_env = \"CLOUDFLARE_API_TOKEN\"  api_base = \"https://api.cloudflare.com/client/v4\"
  [cdn.webhook]     url = \"https://...\"  token_env = \"PURGE_TOKEN\" (optional)     purged on every publish; at most one
     both take:    requests_per_minute = 5  burst = 25  max_tags_per_request = 100  host_purge_threshold = 500
                   max_attempts = 8  request_timeout_secs = 30  lease_secs = 60  poll_secs = 30
                   account = \"<zone id or url>\"  (names the queue and rate limit shared by one CDN account)
  [node]   embedded = true  name = \"main\"  listen = \"127.0.0.1:0\"  data_dir = \"<state_dir>/node\"
           seal_interval_ms = 1000  connect_timeout_secs = 2  read_timeout_secs = 60  handover_timeout_secs = 30
           the storage node behind /_grove/api/v1/<call>; its log is shipped to the store under nodes/<name>/
  [node.limits]     max_value_bytes = 65536  max_read_entries = 1000  max_watchers_per_handle = 16
                    requests_per_second = 200  max_txn_writes = 64
  [node.directory]  <site> = \"host:port\"   sites whose node runs elsewhere (a grove-storage process)
                    etcd_prefix = \"/grove/\"  etcd = [\"http://host:port\", ...]   follow grove-storage --etcd nodes:
                    each site goes to its primary, and writes are retried there after a failover

The flags above override their GROVE_* environment variables, which override the file.
The operator token: GROVE_ADMIN_TOKEN (grove_ + 64 hex digits), or one created and printed once on first start.
Logs: RUST_LOG (default info); GROVE_LOG_FORMAT=json for JSON lines.";

#[cfg(test)]
mod tests {
    use super::CONFIG_HELP;
    use crate::config::file::{ConfigFile, PurgeQueueConfig};

    /// The help's text under each `[section]` header; "" holds the keys
    /// before the first header.
    fn sections() -> Vec<(String, String)> {
        let mut sections = vec![(String::new(), String::new())];
        let mut rest = CONFIG_HELP;
        while let Some(start) = rest.find('[') {
            let (before, after) = rest.split_at(start);
            sections.last_mut().expect("one section").1.push_str(before);
            let end = after.find(']').expect("a header ends");
            let name = after[1..end].trim_start_matches('[').to_owned();
            sections.push((name, String::new()));
            rest = &after[end + 1..];
            // `[[tls.certificates]]`, and brackets inside values such as
            // `domains = [...]`, are not headers of their own.
            if rest.starts_with(']') {
                rest = &rest[1..];
            }
        }
        sections.last_mut().expect("one section").1.push_str(rest);
        sections
    }

    /// `(section, key, default)` for every leaf of `value`.
    fn leaves(section: &str, value: &toml::Value, out: &mut Vec<(String, String, String)>) {
        let toml::Value::Table(table) = value else {
            unreachable!("tables only")
        };
        for (key, value) in table {
            match value {
                toml::Value::Table(_) => {
                    let inner = if section.is_empty() {
                        key.clone()
                    } else {
                        format!("{section}.{key}")
                    };
                    leaves(&inner, value, out);
                }
                leaf => out.push((section.to_owned(), key.clone(), leaf.to_string())),
            }
        }
    }

    fn assert_documented(section: &str, key: &str, default: &str, sections: &[(String, String)]) {
        let wanted = format!("{key} = {default}");
        let documented = sections.iter().filter(|(name, _)| name == section).any(|(_, text)| {
            text.split("  ")
                .any(|part| part.trim() == wanted || part.trim().starts_with(&format!("{wanted} ")))
        });
        assert!(documented, "--help lacks `{wanted}` under [{section}]:\n{CONFIG_HELP}");
    }

    #[test]
    fn the_help_lists_every_key_with_its_real_default() {
        let sections = sections();
        let mut defaults = Vec::new();
        leaves(
            "",
            &toml::Value::try_from(ConfigFile::default()).unwrap(),
            &mut defaults,
        );
        assert!(defaults.len() > 30, "the defaults serialize: {defaults:?}");
        for (section, key, default) in &defaults {
            assert_documented(section, key, default, &sections);
        }
        let mut queue = Vec::new();
        leaves(
            "",
            &toml::Value::try_from(PurgeQueueConfig::default()).unwrap(),
            &mut queue,
        );
        for (_, key, default) in &queue {
            assert_documented("cdn.webhook", key, default, &sections);
        }
        let auth: crate::config::file::AuthConfig =
            toml::from_str("issuer = \"https://id.example\"\nclient_id = \"c\"").unwrap();
        let mut auth_keys = Vec::new();
        leaves("", &toml::Value::try_from(auth).unwrap(), &mut auth_keys);
        // Its values hold brackets, so the block is read whole.
        let start = CONFIG_HELP.find("[sites.<name>.auth]").expect("an auth block");
        let block = &CONFIG_HELP[start..];
        let block = &block[..block.find("\n  [").unwrap_or(block.len())];
        for (_, key, default) in &auth_keys {
            let documented =
                ["issuer", "client_id"].contains(&key.as_str()) || block.contains(&format!("{key} = {default}"));
            assert!(documented, "--help lacks `{key} = {default}` under [sites.<name>.auth]");
        }
    }
}
