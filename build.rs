//! Builds `relay/gpudock-relay.rs` (std only) into a statically linked
//! executable that the binary embeds (see `src/docker/port.rs`): rustc
//! alone, no cargo, no dependencies; glibc's static libraries come with
//! Debian's libc6-dev, which every Rust build on Debian has.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    // Relative relocations packed (DT_RELR, glibc >= 2.36, lld): 1.1 MiB of
    // `.rela.dyn` that the loader read at every start, and that stayed
    // resident, shrinks to a few KiB (issue 11: RSS after start).
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let src = "relay/gpudock-relay.rs";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
    let (Some(out_dir), Ok(target)) = (std::env::var_os("OUT_DIR"), std::env::var("TARGET")) else {
        panic!("build.rs runs under cargo (OUT_DIR and TARGET)");
    };
    let out = PathBuf::from(out_dir).join("gpudock-relay");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--target",
            &target,
        ])
        .args([
            "-C",
            "opt-level=3",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "codegen-units=1", "-C", "target-feature=+crt-static"])
        .arg("-o")
        .arg(&out)
        .arg(src)
        .status();
    let Ok(status) = status else {
        panic!("cannot run rustc for relay/gpudock-relay.rs");
    };
    assert!(
        status.success(),
        "building relay/gpudock-relay.rs (statically linked) failed: install libc6-dev"
    );
}
