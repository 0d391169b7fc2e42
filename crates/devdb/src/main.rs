//! The `devdb` binary: see `devdb::cli`.

fn main() -> std::process::ExitCode {
    devdb::cli::main()
}
