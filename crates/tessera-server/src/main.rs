//! The `tessera` binary; the program is [`tessera_server::entry::main`].

fn main() -> std::process::ExitCode {
    tessera_server::entry::main()
}
