//! grove's test harnesses, shared by the end-to-end suites in `tests/` and
//! the crates' own tests: real processes (`grove-proxy`, the `grove` CLI,
//! `moto_server`, etcd and failing-over storage nodes) on reserved loopback
//! ports, and the one fake, the
//! Cloudflare API, for a service the tests must not reach.

pub mod binaries;
pub mod cloudflare;
pub mod edges;
pub mod host;
pub mod moto;
pub mod oidc;
pub mod ports;
pub mod proxy;
pub mod storage;
