//! Build check: the bundled SQLite should be compiled with the session extension.
//!
//! `libsqlite3-sys` reads extra compile flags from `LIBSQLITE3_FLAGS` (set in the workspace's
//! `.cargo/config.toml` `[env]`). Without them the `sqlite3session_*` symbols do not exist, so
//! replication code is compiled out (cfg `devdb_session`) and `devdb serve` refuses to start
//! with an explanation, instead of breaking the whole workspace's build.

fn main() {
    println!("cargo::rerun-if-env-changed=LIBSQLITE3_FLAGS");
    println!("cargo::rustc-check-cfg=cfg(devdb_session)");
    let flags = std::env::var("LIBSQLITE3_FLAGS").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x.trim_start_matches("-D") == f);
    if has("SQLITE_ENABLE_SESSION") && has("SQLITE_ENABLE_PREUPDATE_HOOK") {
        println!("cargo::rustc-cfg=devdb_session");
    } else {
        println!(
            "cargo::warning=devdb: LIBSQLITE3_FLAGS lacks -DSQLITE_ENABLE_SESSION \
             -DSQLITE_ENABLE_PREUPDATE_HOOK (workspace .cargo/config.toml [env]); \
             `devdb serve` will refuse to start"
        );
    }
}
