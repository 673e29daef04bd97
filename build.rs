//! Build check: the bundled SQLite must be compiled with the session
//! extension, which the metadata journal records every transaction with
//! (`.cargo/config.toml` sets `LIBSQLITE3_FLAGS` for builds in this
//! repository). Without it the link fails with undefined `sqlite3session_*`
//! symbols; this says why instead.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBSQLITE3_FLAGS");
    let flags = std::env::var("LIBSQLITE3_FLAGS").unwrap_or_default();
    for wanted in ["SQLITE_ENABLE_SESSION", "SQLITE_ENABLE_PREUPDATE_HOOK"] {
        if !flags
            .split_whitespace()
            .any(|f| f.trim_start_matches("-D") == wanted)
        {
            panic!(
                "minigcs needs SQLite's session extension: build from the repository (its .cargo/config.toml sets LIBSQLITE3_FLAGS) or set LIBSQLITE3_FLAGS=\"SQLITE_ENABLE_SESSION SQLITE_ENABLE_PREUPDATE_HOOK\""
            );
        }
    }
}
