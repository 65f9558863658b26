//! Compressing a blob once per coding and keeping the result by hash, so a
//! popular page is compressed once, not once per request.

use std::io::Write;

use bytes::Bytes;
use grove_core::ContentHash;

use crate::semantics::Encoding;

/// Below this, compression saves less than the headers it costs.
const MIN_BYTES: usize = 256;

pub struct Compressor {
    /// `None` records that compressing did not make the blob smaller.
    encoded: moka::future::Cache<(ContentHash, Encoding), Option<Bytes>>,
}

impl Compressor {
    pub fn new(max_bytes: u64) -> Self {
        let encoded = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, bytes: &Option<Bytes>| {
                bytes
                    .as_ref()
                    .map_or(64, |bytes| u32::try_from(bytes.len()).unwrap_or(u32::MAX).max(64))
            })
            .build();
        Self { encoded }
    }

    /// `bytes` (the blob `hash`) in `encoding`, or `None` when identity should
    /// be served (tiny blob, or compression would not help).
    pub async fn encode(&self, hash: ContentHash, encoding: Encoding, bytes: Bytes) -> Option<Bytes> {
        if encoding == Encoding::Identity || bytes.len() < MIN_BYTES {
            return None;
        }
        self.encoded
            .get_with((hash, encoding), async move {
                let original = bytes.len();
                let compressed = tokio::task::spawn_blocking(move || compress(&bytes, encoding))
                    .await
                    .expect("compression does not panic");
                (compressed.len() < original).then(|| Bytes::from(compressed))
            })
            .await
    }
}

fn compress(bytes: &[u8], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Identity => bytes.to_vec(),
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            encoder.write_all(bytes).expect("writing to a Vec cannot fail");
            encoder.finish().expect("writing to a Vec cannot fail")
        }
        Encoding::Brotli => {
            // Quality 11 once per blob is affordable for pages; large files get
            // a faster setting so the first request is not kept waiting.
            let quality = if bytes.len() > 1 << 20 { 5 } else { 11 };
            let mut out = Vec::with_capacity(bytes.len() / 3);
            {
                let mut writer = brotli::CompressorWriter::new(&mut out, 64 * 1024, quality, 22);
                writer.write_all(bytes).expect("writing to a Vec cannot fail");
            }
            out
        }
    }
}
