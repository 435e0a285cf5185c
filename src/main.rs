//! `nodegate`: the command. `nodegate worker` runs a supervisor worker, `nodegate agent-worker`
//! an agent worker; `nodegate <command> --help` lists every setting.

fn main() -> std::process::ExitCode {
    nodegate::cli::main()
}
