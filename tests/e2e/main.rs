//! grove's end-to-end tests across processes: real `grove-proxy` and `grove`
//! processes built from this checkout, on reserved loopback ports, against
//! the local store or a real S3 server (`moto_server`), with the fake
//! Cloudflare API, and the crawling tools search bots are checked with. One test binary, so the harness is linked once.

mod crawlers;
mod edges;
mod hardening;
mod http2;
mod login;
mod node;
mod pages;
mod publish;
mod purge;
mod serving;
mod tls;
mod upgrade;
mod worker;
