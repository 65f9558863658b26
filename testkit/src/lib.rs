//! Test doubles for services grove's tests must not reach. Only the
//! Cloudflare API is faked; everything else in the tests is real.

pub mod cloudflare;
