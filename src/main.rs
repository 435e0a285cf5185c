//! `nodegate`: the command. `nodegate worker` runs a supervisor worker, `nodegate frontend` the
//! reference frontend, `nodegate agent-worker` an agent worker; `nodegate stage` copies files to
//! and from a worker and `nodegate nats-setup` writes an operator-mode NATS configuration.
//! `nodegate <command> --help` lists every setting.

fn main() -> std::process::ExitCode {
    nodegate::cli::main()
}
