//! Tree nodes and their compact, versioned byte encoding.
//!
//! Encoding, version 1 (all integers unsigned LEB128 unless noted):
//!
//! ```text
//! magic "GT" | format version (u8 = 1) | level (u8, 0 = leaf) | item count
//! leaf only:  content-type count | each: length, bytes
//! each item:  shared-prefix length with the previous key | suffix length | suffix bytes
//!             leaf: content hash (32 bytes) | size | content-type index
//!             interior: child node hash (32 bytes)
//! ```
//!
//! Keys are prefix-compressed against the previous key because site paths
//! share long prefixes; content types are listed once per node. Decoding is
//! strict (keys strictly increasing and valid, indexes in range, no trailing
//! bytes), since nodes may come from an untrusted uploader.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use crate::hash::ContentHash;
use crate::names::{ContentType, SitePath};

const MAGIC: &[u8; 2] = b"GT";
const FORMAT_VERSION: u8 = 1;
/// A node is cut after a key whose boundary hash starts with this many zero
/// bits, so nodes hold about 2^6 = 64 items.
const BOUNDARY_BITS: u32 = 6;
/// Levels above this cannot occur for any site that fits in memory.
const MAX_LEVEL: u8 = 16;

/// One file of a site version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub path: SitePath,
    pub hash: ContentHash,
    pub size: u64,
    pub content_type: ContentType,
}

/// A pointer from an interior node to a child node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    /// The smallest path in the child's subtree.
    pub first_key: SitePath,
    pub hash: ContentHash,
}

/// A decoded tree node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeNode {
    Leaf(Vec<Entry>),
    Interior { level: u8, children: Vec<ChildRef> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed tree node: {0}")]
pub struct DecodeError(pub &'static str);

impl TreeNode {
    pub fn level(&self) -> u8 {
        match self {
            Self::Leaf(_) => 0,
            Self::Interior { level, .. } => *level,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Leaf(entries) => entries.len(),
            Self::Interior { children, .. } => children.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn first_key(&self) -> Option<&SitePath> {
        match self {
            Self::Leaf(entries) => entries.first().map(|entry| &entry.path),
            Self::Interior { children, .. } => children.first().map(|child| &child.first_key),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.len() * 48);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.level());
        write_uint(&mut out, self.len() as u64);
        match self {
            Self::Leaf(entries) => {
                let mut type_index = BTreeMap::new();
                for entry in entries {
                    let next = type_index.len();
                    type_index.entry(entry.content_type.as_str()).or_insert(next);
                }
                let mut types: Vec<(&str, usize)> = type_index.iter().map(|(t, i)| (*t, *i)).collect();
                types.sort_by_key(|(_, index)| *index);
                write_uint(&mut out, types.len() as u64);
                for (content_type, _) in types {
                    write_bytes(&mut out, content_type.as_bytes());
                }
                let mut previous = "";
                for entry in entries {
                    write_key(&mut out, previous, entry.path.as_str());
                    out.extend_from_slice(entry.hash.as_bytes());
                    write_uint(&mut out, entry.size);
                    write_uint(&mut out, type_index[entry.content_type.as_str()] as u64);
                    previous = entry.path.as_str();
                }
            }
            Self::Interior { children, .. } => {
                let mut previous = "";
                for child in children {
                    write_key(&mut out, previous, child.first_key.as_str());
                    out.extend_from_slice(child.hash.as_bytes());
                    previous = child.first_key.as_str();
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut input = Cursor::new(bytes);
        let mut magic = [0u8; 2];
        read_exact(&mut input, &mut magic)?;
        if &magic != MAGIC {
            return Err(DecodeError("not a tree node (bad magic)"));
        }
        if read_u8(&mut input)? != FORMAT_VERSION {
            return Err(DecodeError("unsupported format version"));
        }
        let level = read_u8(&mut input)?;
        if level > MAX_LEVEL {
            return Err(DecodeError("level out of range"));
        }
        let count = read_len(&mut input, bytes.len())?;
        let mut previous = String::new();
        let node = if level == 0 {
            let type_count = read_len(&mut input, bytes.len())?;
            let types = (0..type_count)
                .map(|_| {
                    let raw = read_bytes(&mut input, bytes.len())?;
                    let text = std::str::from_utf8(&raw).map_err(|_| DecodeError("content type is not UTF-8"))?;
                    ContentType::parse(text).map_err(|_| DecodeError("invalid content type"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let path = read_key(&mut input, &mut previous, bytes.len())?;
                let hash = read_hash(&mut input)?;
                let size = read_uint(&mut input)?;
                let index = read_len(&mut input, types.len())?;
                let content_type = types.get(index).ok_or(DecodeError("content type index out of range"))?;
                entries.push(Entry {
                    path,
                    hash,
                    size,
                    content_type: content_type.clone(),
                });
            }
            TreeNode::Leaf(entries)
        } else {
            if count == 0 {
                return Err(DecodeError("interior node without children"));
            }
            let mut children = Vec::with_capacity(count);
            for _ in 0..count {
                let first_key = read_key(&mut input, &mut previous, bytes.len())?;
                let hash = read_hash(&mut input)?;
                children.push(ChildRef { first_key, hash });
            }
            TreeNode::Interior { level, children }
        };
        if input.position() as usize != bytes.len() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(node)
    }
}

/// Whether a node at `level` ends after the item keyed `key`.
///
/// It depends on the key alone, never on content or position, so the same set
/// of paths always splits into the same nodes, and editing one entry can move
/// node boundaries only around that entry.
pub(crate) fn is_boundary(level: u8, key: &SitePath) -> bool {
    let mut input = Vec::with_capacity(key.as_str().len() + 1);
    input.push(level);
    input.extend_from_slice(key.as_str().as_bytes());
    let digest = ContentHash::of(&input);
    let first = u32::from_be_bytes(digest.as_bytes()[..4].try_into().expect("4 bytes"));
    first.leading_zeros() >= BOUNDARY_BITS
}

fn write_uint(out: &mut Vec<u8>, value: u64) {
    leb128::write::unsigned(out, value).expect("writing to a Vec cannot fail");
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn write_key(out: &mut Vec<u8>, previous: &str, key: &str) {
    let shared = previous.bytes().zip(key.bytes()).take_while(|(a, b)| a == b).count();
    write_uint(out, shared as u64);
    write_bytes(out, &key.as_bytes()[shared..]);
}

fn read_exact(input: &mut Cursor<&[u8]>, buf: &mut [u8]) -> Result<(), DecodeError> {
    input.read_exact(buf).map_err(|_| DecodeError("truncated"))
}

fn read_u8(input: &mut Cursor<&[u8]>) -> Result<u8, DecodeError> {
    let mut byte = [0u8; 1];
    read_exact(input, &mut byte)?;
    Ok(byte[0])
}

fn read_uint(input: &mut Cursor<&[u8]>) -> Result<u64, DecodeError> {
    leb128::read::unsigned(input).map_err(|_| DecodeError("bad integer"))
}

/// Reads a length or count, refusing any larger than `bound` (the node's own
/// size bounds every count in it, which stops absurd allocations).
fn read_len(input: &mut Cursor<&[u8]>, bound: usize) -> Result<usize, DecodeError> {
    let value = read_uint(input)?;
    usize::try_from(value)
        .ok()
        .filter(|value| *value <= bound)
        .ok_or(DecodeError("length out of range"))
}

fn read_bytes(input: &mut Cursor<&[u8]>, bound: usize) -> Result<Vec<u8>, DecodeError> {
    let len = read_len(input, bound)?;
    let mut bytes = vec![0; len];
    read_exact(input, &mut bytes)?;
    Ok(bytes)
}

fn read_hash(input: &mut Cursor<&[u8]>) -> Result<ContentHash, DecodeError> {
    let mut hash = [0u8; 32];
    read_exact(input, &mut hash)?;
    Ok(ContentHash::from_bytes(hash))
}

/// Reads one prefix-compressed key, checking it is valid and sorts strictly
/// after the previous one.
fn read_key(input: &mut Cursor<&[u8]>, previous: &mut String, bound: usize) -> Result<SitePath, DecodeError> {
    let shared = read_len(input, previous.len())?;
    let suffix = read_bytes(input, bound)?;
    let mut key = previous.as_bytes()[..shared].to_vec();
    key.extend_from_slice(&suffix);
    let key = String::from_utf8(key).map_err(|_| DecodeError("key is not UTF-8"))?;
    if !previous.is_empty() && key.as_str() <= previous.as_str() {
        return Err(DecodeError("keys are not strictly increasing"));
    }
    let path = SitePath::parse(&key).map_err(|_| DecodeError("invalid key"))?;
    *previous = key;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, content_type: &str) -> Entry {
        Entry {
            path: SitePath::parse(path).unwrap(),
            hash: ContentHash::of(path.as_bytes()),
            size: path.len() as u64 * 1000,
            content_type: ContentType::parse(content_type).unwrap(),
        }
    }

    #[test]
    fn leaf_and_interior_round_trip() {
        let leaf = TreeNode::Leaf(vec![
            entry("about/index.html", "text/html"),
            entry("about/team.html", "text/html"),
            entry("logo.png", "image/png"),
        ]);
        assert_eq!(TreeNode::decode(&leaf.encode()).unwrap(), leaf);
        let interior = TreeNode::Interior {
            level: 2,
            children: vec![
                ChildRef {
                    first_key: SitePath::parse("a").unwrap(),
                    hash: ContentHash::of(b"1"),
                },
                ChildRef {
                    first_key: SitePath::parse("b/c").unwrap(),
                    hash: ContentHash::of(b"2"),
                },
            ],
        };
        assert_eq!(TreeNode::decode(&interior.encode()).unwrap(), interior);
        assert_eq!(
            TreeNode::decode(&TreeNode::Leaf(vec![]).encode()).unwrap(),
            TreeNode::Leaf(vec![])
        );
    }

    #[test]
    fn decoding_refuses_malformed_nodes() {
        let good = TreeNode::Leaf(vec![entry("a.html", "text/html"), entry("b.html", "text/html")]).encode();
        for cut in 0..good.len() {
            assert!(TreeNode::decode(&good[..cut]).is_err(), "truncated at {cut} accepted");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(TreeNode::decode(&trailing).unwrap_err(), DecodeError("trailing bytes"));

        let unsorted = TreeNode::Leaf(vec![entry("b.html", "text/html"), entry("a.html", "text/html")]).encode();
        assert_eq!(
            TreeNode::decode(&unsorted).unwrap_err(),
            DecodeError("keys are not strictly increasing")
        );

        let escaping = TreeNode::Leaf(vec![entry("a.html", "text/html")]).encode();
        let escaping = replace(&escaping, b"a.html", b"../etc");
        assert_eq!(TreeNode::decode(&escaping).unwrap_err(), DecodeError("invalid key"));

        let mut wrong_version = good.clone();
        wrong_version[2] = 9;
        assert_eq!(
            TreeNode::decode(&wrong_version).unwrap_err(),
            DecodeError("unsupported format version")
        );
    }

    fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = haystack.windows(from.len()).position(|w| w == from).unwrap();
        [&haystack[..at], to, &haystack[at + from.len()..]].concat()
    }

    #[test]
    fn boundaries_give_the_target_fanout() {
        let keys: Vec<SitePath> = (0..20_000)
            .map(|i| SitePath::parse(&format!("p/{i}.html")).unwrap())
            .collect();
        let boundaries = keys.iter().filter(|key| is_boundary(0, key)).count();
        let fanout = keys.len() as f64 / boundaries as f64;
        assert!((48.0..=80.0).contains(&fanout), "fanout {fanout}");
    }
}
