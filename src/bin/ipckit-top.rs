//! `ipckit-top`: the monitor and the bus tools. Everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    ipckit::cli::main()
}
