//! The canary of `core/clippy.toml`: calls every item the core's clippy configuration bans.
//! `.ci/run` lints this file as a crate of its own with that configuration and fails unless
//! clippy refuses every banned path, so an entry that names nothing (a typo, a path std moved)
//! cannot pass silently. Never built into anything; when you add a ban, add its use here.
#![allow(unused, clippy::all)]
#![warn(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::ToSocketAddrs as _;
use std::path::Path;

pub fn clocks() {
    let _: std::time::Instant = std::time::Instant::now();
    let _: std::time::SystemTime = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::ZERO);
}

pub fn environment() {
    let _ = std::env::var("A");
    let _ = std::env::var_os("A");
    let _ = std::env::vars();
    let _ = std::env::vars_os();
    // SAFETY: never run; the canary is only linted.
    unsafe { std::env::set_var("A", "b") };
    // SAFETY: never run; the canary is only linted.
    unsafe { std::env::remove_var("A") };
    let _ = std::env::args();
    let _ = std::env::args_os();
    let _ = std::env::current_dir();
    let _ = std::env::set_current_dir("/");
    let _ = std::env::current_exe();
    let _ = std::env::temp_dir();
    let _: std::process::Command = std::process::Command::new("true");
    let _: Option<std::process::Child> = None;
    let _ = std::thread::spawn(|| {});
    let _ = std::io::stdin();
    let _ = std::io::stdout();
    let _ = std::io::stderr();
    std::process::exit(0);
}

pub fn filesystem(path: &Path) {
    let _ = std::fs::read(path);
    let _ = std::fs::read_to_string(path);
    let _: Option<std::fs::ReadDir> = std::fs::read_dir(path).ok();
    let _ = std::fs::read_link(path);
    let _ = std::fs::metadata(path);
    let _ = std::fs::symlink_metadata(path);
    let _ = std::fs::exists(path);
    let _ = std::fs::canonicalize(path);
    let _ = std::fs::write(path, b"");
    let _ = std::fs::copy(path, path);
    let _ = std::fs::rename(path, path);
    let _ = std::fs::hard_link(path, path);
    let _ = std::fs::create_dir(path);
    let _ = std::fs::create_dir_all(path);
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir(path);
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::set_permissions(path, std::fs::metadata(path).unwrap().permissions());
    let _: Option<std::fs::File> = std::fs::File::open(path).ok();
    let _ = std::fs::File::create(path);
    let _ = std::fs::File::create_new(path);
    let _: std::fs::OpenOptions = std::fs::File::options();
    let _ = std::fs::OpenOptions::new().read(true).open(path);
    let _: Option<std::fs::DirBuilder> = None;
    let _ = path.exists();
    let _ = path.try_exists();
    let _ = path.is_file();
    let _ = path.is_dir();
    let _ = path.is_symlink();
    let _ = path.metadata();
    let _ = path.symlink_metadata();
    let _ = path.read_dir();
    let _ = path.read_link();
    let _ = path.canonicalize();
}

pub fn sockets() {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let _: Option<std::net::TcpStream> = std::net::TcpStream::connect(addr).ok();
    let _ = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::ZERO);
    let _: Option<std::net::TcpListener> = std::net::TcpListener::bind(addr).ok();
    let _: Option<std::net::UdpSocket> = std::net::UdpSocket::bind(addr).ok();
    let _ = "localhost:1".to_socket_addrs();
}
