//! grove-proxy's integration tests: real `grove-proxy` processes on loopback
//! ports, one test binary so the harness is shared and linked once.

mod node;
mod publish;
mod purge;
mod serving;
mod support;
mod tls;
mod upgrade;
mod worker;
