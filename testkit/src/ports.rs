//! Loopback ports for servers under test, reserved without a race.
//!
//! Picking a free port by binding and closing leaves a window in which
//! another test (or process) can take it. Instead a [`Reserved`] port stays
//! bound, with `SO_REUSEADDR` and without listening, for as long as the test
//! holds it: the kernel hands it to no other port-0 bind, while the server
//! under test (which binds with `SO_REUSEADDR`, as Pingora, tokio, and
//! Werkzeug do) can still listen on it.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A loopback port held for a server under test.
#[derive(Debug)]
pub struct Reserved {
    _socket: Socket,
    addr: SocketAddr,
}

impl Reserved {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Reserves a free port on 127.0.0.1.
pub fn reserve() -> Reserved {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("a free loopback port");
    let addr = socket
        .local_addr()
        .expect("a bound address")
        .as_socket()
        .expect("an inet address");
    Reserved { _socket: socket, addr }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_is_not_handed_out_but_a_server_can_listen_on_it() {
        let reserved = reserve();
        for _ in 0..200 {
            let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert_ne!(other.local_addr().unwrap().port(), reserved.port());
        }
        let server = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        server.set_reuse_address(true).unwrap();
        server.bind(&reserved.addr().into()).unwrap();
        server.listen(16).unwrap();
        std::net::TcpStream::connect(reserved.addr()).unwrap();
    }
}
