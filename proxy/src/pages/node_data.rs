//! Templates' data from the site's storage node, read as the proxy.

use std::sync::Arc;

use grove_core::SiteName;
use grove_core::timestamp::Timestamp;
use grove_pages::data::{DataEntry, DataSource};

use crate::node_client::NodeClient;

/// One site's node data. A render runs on a blocking thread, so each read
/// blocks on the runtime the render came from.
pub struct NodeData {
    pub node: Arc<NodeClient>,
    pub site: SiteName,
    pub runtime: tokio::runtime::Handle,
}

impl DataSource for NodeData {
    fn entries(&self, path: &str, limit: usize) -> Result<Vec<DataEntry>, String> {
        let entries = self
            .runtime
            .block_on(
                self.node
                    .read_newest(&self.site, path, Timestamp::from_u64(u64::MAX), limit),
            )
            .map_err(|failure| failure.to_string())?;
        entries
            .into_iter()
            .map(|entry| {
                let data = serde_json::from_str(entry.data.get()).map_err(|error| error.to_string())?;
                Ok(DataEntry {
                    ts: entry.ts.to_string(),
                    data,
                })
            })
            .collect()
    }

    fn paths(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.runtime
            .block_on(self.node.children(&self.site, prefix))
            .map_err(|failure| failure.to_string())
    }
}
