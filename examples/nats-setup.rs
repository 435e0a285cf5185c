//! `nats-setup DIR [PORT]`: writes an operator, an account, the frontend's service user and a
//! `nats-server.conf` (operator mode, memory resolver) into DIR, keeping existing keys, with
//! every file mode 0600; prints the environment lines the frontend needs (they read the seeds
//! from their files: no seed is ever printed).
//!
//! ```text
//! cargo run --example nats-setup -- ./nats 4222
//! nats-server -c ./nats/nats-server.conf
//! ```

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use nodegate::tokio_adapter::frontend::setup;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(dir), port) = (args.next(), args.next()) else {
        eprintln!("usage: nats-setup DIR [PORT]   (PORT defaults to 4222)");
        return ExitCode::from(2);
    };
    let port = match port.as_deref().map(str::parse::<u16>) {
        None => 4222,
        Some(Ok(port)) if port > 0 => port,
        Some(_) => {
            eprintln!("nats-setup: PORT must be a number from 1 to 65535, e.g. 4222");
            return ExitCode::from(2);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match setup::run(std::path::Path::new(&dir), port, now) {
        Ok(report) => {
            for name in &report.created {
                println!("created {}/{name}", report.dir.display());
            }
            for name in &report.kept {
                println!("kept    {}/{name}", report.dir.display());
            }
            println!(
                "wrote   {}/nats-server.conf (account {})",
                report.dir.display(),
                report.account_public_key
            );
            println!();
            println!(
                "Start the server:  nats-server -c {}/nats-server.conf",
                report.dir.display()
            );
            println!("Frontend environment:");
            for line in &report.env_lines {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nats-setup: {e}");
            ExitCode::from(1)
        }
    }
}
